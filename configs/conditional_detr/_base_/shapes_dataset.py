# Synthetic "shapes" detection data (tools/misc/make_shapes_dataset.py).
#
# Generate the data first (takes a few seconds):
#   python tools/misc/make_shapes_dataset.py --out data/shapes
#
# Shared by configs/conditional_detr/shapes_demo_detr.py (plain DETR) and
# configs/conditional_detr/shapes_demo.py (Conditional DETR), so both demos
# see exactly the same data, augmentation and evaluation.
#
# To point at another copy of the data, override every place the root is
# used, e.g. with --cfg-options:
#   train_dataloader.dataset.data_root=DIR/ val_dataloader.dataset.data_root=DIR/
#   test_dataloader.dataset.data_root=DIR/
#   val_evaluator.ann_file=DIR/annotations/instances_val.json
#   test_evaluator.ann_file=DIR/annotations/instances_val.json
# mmdet's CocoDataset and mmcv's LoadImageFromFile with clear errors for bad
# annotations/images and counted repairs (mmdet_conddetr.datasets), so every
# entry point (Runner.from_cfg, mim, mmdet's tools, ours) builds the same
# classes. The dataset has a scoped name; the loader keeps the name
# LoadImageFromFile, which mmdet's DetInferencer looks for and which in this
# package's scope (default_scope) is RobustLoadImageFromFile.
dataset_type = 'mmdet_conddetr.RobustCocoDataset'
load_image = 'LoadImageFromFile'
data_root = 'data/shapes/'
backend_args = None

# Must match CLASSES / PALETTE in tools/misc/make_shapes_dataset.py
# (category ids 1..4 in the JSON files, in this order).
classes = ('circle', 'square', 'triangle', 'star')
palette = [(220, 20, 60), (0, 130, 200), (60, 180, 75), (255, 190, 0)]
metainfo = dict(classes=classes, palette=palette)

# Images are generated as 128x128 squares and the demo models see them at
# 64x64 (a quarter of the compute; shapes stay recognisable): every image is
# resized to fit this scale, keeping the aspect ratio, so a batch needs no
# padding. Boxes are predicted, and evaluated, in the 128 px frame.
img_scale = (64, 64)

# Training reads all 1000 images every epoch: they stay decoded in memory
# (~50 MB), which saves about half of the data time of an iteration.
train_pipeline = [
    dict(
        type='mmdet_conddetr.RobustLoadImageFromFile',
        backend_args=backend_args,
        max_cached_images=5000),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type=load_image, backend_args=backend_args),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor'))
]

# Data are loaded in the main process (num_workers=0): decoding and
# transforming a 128 px PNG takes about a millisecond, so loading a batch of 8
# costs ~10-20 ms (the `data_time` in the log) against ~160 ms of compute per
# iteration on the 2-core CPU machine, and worker processes would only compete
# with the two compute threads for the same cores. Raise num_workers (with
# persistent_workers=True) on machines with more cores.
train_dataloader = dict(
    batch_size=8,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=True),
    batch_sampler=dict(type='AspectRatioBatchSampler'),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'),
        filter_cfg=dict(filter_empty_gt=False, min_size=1),
        pipeline=train_pipeline,
        backend_args=backend_args))
val_dataloader = dict(
    batch_size=8,
    num_workers=0,
    persistent_workers=False,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='val/'),
        test_mode=True,
        pipeline=test_pipeline,
        backend_args=backend_args))
test_dataloader = val_dataloader

val_evaluator = dict(
    type='CocoMetric',
    ann_file=data_root + 'annotations/instances_val.json',
    metric='bbox',
    format_only=False,
    backend_args=backend_args)
test_evaluator = val_evaluator
