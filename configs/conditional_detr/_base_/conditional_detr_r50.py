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

# DETR's augmentation: multi-scale resize (short side 480..800, long side
# <= 1333), or resize + random crop (384..600) + multi-scale resize.
train_scales = [(480, 1333), (512, 1333), (544, 1333), (576, 1333),
                (608, 1333), (640, 1333), (672, 1333), (704, 1333),
                (736, 1333), (768, 1333), (800, 1333)]
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='RandomChoice',
        transforms=[
            [dict(type='RandomChoiceResize', scales=train_scales,
                  keep_ratio=True)],
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
                    scales=train_scales,
                    keep_ratio=True)
            ]
        ]),
    dict(type='PackDetInputs')
]
# As the official code (torchvision's CocoDetection over every image id),
# images without annotations are kept and train as pure negatives; mmdet's
# COCO base would drop them (filter_empty_gt=True) and those under 32 px.
train_dataloader = dict(
    batch_size=2,
    dataset=dict(
        pipeline=train_pipeline,
        filter_cfg=dict(filter_empty_gt=False, min_size=0)))
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(_delete_=True, type='AdamW', lr=1e-4, weight_decay=1e-4),
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
# 8 GPUs x 2 images; `tools/train.py --auto-scale-lr` scales lr to the real
# total batch size.
auto_scale_lr = dict(enable=False, base_batch_size=16)

# Crash-safe checkpoint writes (kill -9, full disk) and a clear stop on a
# NaN/inf loss; custom_hooks=[dict(type='NonFiniteLossHook', action='skip')]
# skips such steps instead.
# (scoped name: mmdet's default_runtime gives this dict _scope_='mmdet')
# TF32 matmuls for float32 on Ampere+ GPUs (no effect elsewhere); off with
# --cfg-options default_hooks.tf32.allow_tf32=False.
default_hooks = dict(
    checkpoint=dict(type='mmdet_conddetr.AtomicCheckpointHook'),
    tf32=dict(type='mmdet_conddetr.TF32Hook', allow_tf32=True))
custom_hooks = [dict(type='NonFiniteLossHook', action='raise')]
