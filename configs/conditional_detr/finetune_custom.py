# Fine-tune a published COCO Conditional DETR R50 on your own COCO-format
# dataset. Copy this file, set the paths and class names, then
#
#   python tools/train.py configs/conditional_detr/finetune_custom.py
#   python tools/test.py configs/conditional_detr/finetune_custom.py \
#       work_dirs/finetune_custom/epoch_24.pth
#
# load_from takes a COCO checkpoint of any supported layout (official,
# detrex, Hugging Face, MMDetection or ours; converted on the fly). Every
# weight but the class head loads; the class head (80 or 91 rows) is
# re-initialised for your classes with the prior-probability bias, and the
# log says so in one line. Any other difference (another depth, another
# backbone) stops the run with a message instead of a partial load.
_base_ = './r50_50ep.py'

# ------------------------------------------------------------------ data
# A COCO-format folder:  <data_root>/annotations/instances_train.json,
# <data_root>/annotations/instances_val.json, <data_root>/train/*.jpg,
# <data_root>/val/*.jpg (file_name in the JSON is relative to the folder).
data_root = 'data/my_coco/'
# Your category names as in the JSON's "categories"; label i is classes[i].
# Annotations of categories not listed here are ignored.
classes = ('circle', 'square', 'triangle', 'star')
metainfo = dict(classes=classes)
load_from = 'checkpoints/ConditionalDETR_r50_epoch50.pth'

model = dict(
    # no ImageNet download: load_from replaces the backbone weights anyway
    backbone=dict(init_cfg=None),
    bbox_head=dict(num_classes=len(classes)))

train_dataloader = dict(
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/')))
val_dataloader = dict(
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='val/')))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator

# -------------------------------------------------------------- schedule
# From COCO weights a few thousand images converge in tens of epochs, not
# the 50 of training from ImageNet: 24 epochs with the lr divided by 10
# after 16 is a sound start. lr 1e-4 (backbone 1e-5) is for a total batch
# of 16 (8 GPUs x 2); on fewer GPUs pass --auto-scale-lr, or keep 1e-4 for
# total batches of 4-16 (AdamW is forgiving). A small dataset (hundreds of
# images) wants more epochs (50-100, lr drop at 2/3) rather than a higher
# lr; if the loss jumps early, lower lr to 5e-5.
max_epochs = 24
lr_drop_epoch = 16
train_cfg = dict(max_epochs=max_epochs, val_interval=2)
param_scheduler = [
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[lr_drop_epoch],
        gamma=0.1)
]
default_hooks = dict(checkpoint=dict(interval=2, max_keep_ckpts=3))
