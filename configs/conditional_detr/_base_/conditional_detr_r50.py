# Conditional DETR R50 on COCO at the official defaults (Atten4Vis/ConditionalDETR
# main.py): d=256, 8 heads, 6+6 layers, FFN 2048, dropout 0.1, 300 queries,
# focal loss (alpha 0.25, gamma 2) with weights cls 2 / L1 5 / GIoU 2, the same
# weights for the matching costs, AdamW 1e-4 (backbone 1e-5), wd 1e-4,
# grad-norm clip 0.1. The runnable configs override epochs and backbone only.
_base_ = [
    'mmdet::_base_/datasets/coco_detection.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
]
default_scope = 'mmdet_conddetr'
# Import the package as soon as the config is read (Config.fromfile): mmdet's
# DetInferencer loads `weights` before it builds the model, and the package
# gives every checkpoint download a timeout and one clear error. A config
# that sets its own custom_imports should list 'mmdet_conddetr' too.
custom_imports = dict(imports=['mmdet_conddetr'], allow_failed_imports=False)

embed_dims = 256
model = dict(
    # Built in this package's scope whatever the caller's default scope is
    # (e.g. mmdet's DetInferencer, whose scope is 'mmdet' unless told).
    _scope_='mmdet_conddetr',
    type='ConditionalDETR',
    num_queries=300,
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_size_divisor=1),
    backbone=dict(
        type='ResNet',
        depth=50,
        num_stages=4,
        out_indices=(3, ),
        frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=False),
        norm_eval=True,
        style='pytorch',
        # torchvision's ImageNet weights, fetched by URL (no torchvision import).
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://download.pytorch.org/models/'
            'resnet50-0676ba61.pth')),
    neck=dict(
        type='ChannelMapper',
        in_channels=[2048],
        kernel_size=1,
        out_channels=embed_dims,
        act_cfg=None,
        norm_cfg=None,
        num_outs=1),
    encoder=dict(
        num_layers=6,
        layer_cfg=dict(
            embed_dims=embed_dims, num_heads=8, feedforward_dims=2048,
            dropout=0.1)),
    decoder=dict(
        num_layers=6,
        layer_cfg=dict(
            embed_dims=embed_dims, num_heads=8, feedforward_dims=2048,
            dropout=0.1)),
    positional_encoding=dict(num_feats=embed_dims // 2, normalize=True),
    bbox_head=dict(
        type='ConditionalDETRHead',
        num_classes=80,
        embed_dims=embed_dims,
        loss_cls=dict(
            type='mmdet.FocalLoss',
            use_sigmoid=True,
            gamma=2.0,
            alpha=0.25,
            loss_weight=2.0),
        loss_bbox=dict(type='mmdet.L1Loss', loss_weight=5.0),
        loss_iou=dict(type='mmdet.GIoULoss', loss_weight=2.0)),
    train_cfg=dict(
        assigner=dict(
            type='BatchedHungarianAssigner',
            class_weight=2.0,
            bbox_weight=5.0,
            giou_weight=2.0)),
    test_cfg=dict(max_per_img=100))

# ---------------------------------------------------------------- COCO data
# The official pipeline (datasets/coco.py + datasets/transforms.py of
# Atten4Vis/ConditionalDETR, copied from DETR), image file -> input tensor ->
# boxes: PIL decoding without EXIF rotation, the official size rule (short
# side, long side truncated, optional cap) with PIL's bilinear filter
# (DETRResize), crowd boxes out of the targets, boxes clipped and emptied
# ones dropped as officially. mmdet's RandomFlip and RandomCrop do what the
# official flip and RandomSizeCrop do (tests/test_datasets/).
#   image_set='train': flip 0.5, then with p=0.5 a multi-scale resize (short
#   side 480..800 step 32, long side <= 1333), else a resize to short side
#   400/500/600 (uncapped) -> random crop 384..600 -> the multi-scale resize.
#   image_set='val': short side 800, long side <= 1333.
# Normalisation (ImageNet mean/std on 0..255 RGB) is the data preprocessor's.
_load = dict(
    type='mmdet_conddetr.RobustLoadImageFromFile',
    color_type='color_ignore_orientation',  # Image.open(): no EXIF rotation
    imdecode_backend='pillow',  # the official decoder
    backend_args={{_base_.backend_args}})
train_short_sides = [480, 512, 544, 576, 608, 640, 672, 704, 736, 768, 800]
_multi_scale = dict(
    type='RandomChoiceResize',
    scales=train_short_sides,
    resize_type='mmdet_conddetr.DETRResize',
    max_size=1333)
train_pipeline = [
    _load,
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='RandomChoice',  # uniform, as the official RandomSelect(p=0.5)
        transforms=[
            [_multi_scale],
            [
                dict(
                    type='RandomChoiceResize',
                    scales=[400, 500, 600],
                    resize_type='mmdet_conddetr.DETRResize',
                    max_size=None),
                dict(
                    type='RandomCrop',  # = official RandomSizeCrop(384, 600)
                    crop_type='absolute_range',
                    crop_size=(384, 600),
                    allow_negative_crop=True),
                _multi_scale,
            ],
        ]),
    dict(type='PackDetInputs')
]
test_pipeline = [
    # Named LoadImageFromFile so that mmdet's DetInferencer finds it; in this
    # package's scope the name is the same RobustLoadImageFromFile class.
    dict(_load, type='LoadImageFromFile'),
    dict(type='mmdet_conddetr.DETRResize', scale=800, max_size=1333),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor'))
]
# Batches as the official main.py: random pairs of images (torch's
# BatchSampler, drop_last=True; no aspect-ratio grouping, so mmdet's
# AspectRatioBatchSampler is removed), 2 images per GPU (main.py
# --batch_size default; scripts/conddetr_r50_epoch50.sh and
# conddetr_r101_epoch50.sh on 8 GPUs: total 16; the DC5 configs set 1, as
# scripts/conddetr_r50dc5_epoch50.sh, total 8). Evaluation uses the same
# per-GPU batch (main.py's val loader; README "Evaluation": --batch_size 2,
# and "DC5 models show a significant drop in AP if evaluated with more than
# 1 image per GPU"): padding in a batch changes the outputs slightly, so the
# AP depends a little on which images share a batch (images in id order,
# split over the GPUs as torch's DistributedSampler does).
# As the official code (torchvision's CocoDetection over every image id),
# images without annotations are kept and train as pure negatives; mmdet's
# COCO base would drop them (filter_empty_gt=True) and those under 32 px.
# The datasets (and so their pipelines) are built in this package's scope
# (mmdet's base gives them _scope_='mmdet').
train_dataloader = dict(
    batch_size=2,
    drop_last=True,
    pin_memory=True,
    batch_sampler=None,
    dataset=dict(
        type='mmdet_conddetr.RobustCocoDataset',
        _scope_='mmdet_conddetr',
        convention='official',
        pipeline=train_pipeline,
        filter_cfg=dict(filter_empty_gt=False, min_size=0)))
val_dataloader = dict(
    batch_size=2,
    pin_memory=True,
    dataset=dict(
        type='mmdet_conddetr.RobustCocoDataset',
        _scope_='mmdet_conddetr',
        convention='official',
        pipeline=test_pipeline))
test_dataloader = val_dataloader

# MMDetection's own DETR pipeline (cv2 resize with mmcv's size rule), for a
# config that prefers it (README, "Where MMDetection 3.3's built-in
# ConditionalDETR differs"):
#   train_dataloader = dict(
#       dataset=dict(pipeline=_base_.mmdet_train_pipeline))
#   val_dataloader = test_dataloader = dict(
#       dataset=dict(pipeline=_base_.mmdet_test_pipeline))
_mmdet_scales = [(s, 1333) for s in train_short_sides]
mmdet_train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='RandomChoice',
        transforms=[[
            dict(type='RandomChoiceResize', scales=_mmdet_scales,
                 keep_ratio=True)
        ],
                    [
                        dict(
                            type='RandomChoiceResize',
                            scales=[(400, 1333), (500, 1333), (600, 1333)],
                            keep_ratio=True),
                        dict(
                            type='RandomCrop',
                            crop_type='absolute_range',
                            crop_size=(384, 600),
                            allow_negative_crop=True),
                        dict(
                            type='RandomChoiceResize',
                            scales=_mmdet_scales,
                            keep_ratio=True)
                    ]]),
    dict(type='PackDetInputs')
]
mmdet_test_pipeline = {{_base_.test_pipeline}}

# fused=True: one fused call per parameter group instead of a Python loop over
# the ~300 tensors (torch's default on the CPU), and two groups (backbone and
# the rest) instead of mmengine's one per tensor; same update rule and lrs.
optim_wrapper = dict(
    type='OptimWrapper',
    constructor='mmdet_conddetr.MergedGroupsOptimWrapperConstructor',
    optimizer=dict(
        _delete_=True, type='AdamW', lr=1e-4, weight_decay=1e-4, fused=True),
    clip_grad=dict(max_norm=0.1, norm_type=2),
    paramwise_cfg=dict(
        custom_keys={'backbone': dict(lr_mult=0.1, decay_mult=1.0)}))

max_epochs = 50
lr_drop_epoch = 40
train_cfg = dict(max_epochs=max_epochs, val_interval=1)
param_scheduler = [
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[lr_drop_epoch],
        gamma=0.1)
]
# 8 GPUs x 2 images (DC5: 8 x 1, base_batch_size=8); `tools/train.py
# --auto-scale-lr` scales lr to the real total batch size.
auto_scale_lr = dict(enable=False, base_batch_size=16)

# Crash-safe checkpoint writes (kill -9, full disk), a clear stop on a
# NaN/inf loss (action='skip' skips such steps instead) and a refusal of a
# checkpoint (load_from, resume, tools/test.py) that does not fit the model
# instead of a partial load (a class head of another size is tolerated when
# fine-tuning with load_from). Scoped names, so every entry point
# (Runner.from_cfg, mim train, mmdet's tools/train.py, ours) builds the same
# hooks; mmdet's default_runtime gives default_hooks _scope_='mmdet'.
# TF32 matmuls for float32 on Ampere+ GPUs (no effect elsewhere); off with
# --cfg-options default_hooks.tf32.allow_tf32=False.
default_hooks = dict(
    checkpoint=dict(type='mmdet_conddetr.AtomicCheckpointHook'),
    tf32=dict(type='mmdet_conddetr.TF32Hook', allow_tf32=True))
custom_hooks = [
    dict(type='mmdet_conddetr.NonFiniteLossHook', action='raise'),
    dict(type='mmdet_conddetr.CheckpointMatchHook'),
]
