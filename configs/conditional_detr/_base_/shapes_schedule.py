# The shared "budget" of the shapes demos: model size, optimiser, schedule
# and runtime settings that configs/conditional_detr/shapes_demo_detr.py
# (plain DETR) and configs/conditional_detr/shapes_demo.py (Conditional DETR)
# both inherit, so that the two detectors are compared at the same backbone,
# width, depth, number of queries, image size and training length.
#
# A demo config uses these variables through ``_base_``, e.g.
#   model = dict(backbone=_base_.backbone, num_queries=_base_.num_queries, ...)
# and must not change them; only the detector-specific parts (attention
# modules, head, losses, matching costs) differ between the two demos.
#
# This file also pulls in mmdet's default runtime (hooks, logging,
# visualiser) and adjusts it, so a demo config lists only this file and
# _base_/shapes_dataset.py as its bases.
_base_ = 'mmdet::_base_/default_runtime.py'
default_scope = 'mmdet_conddetr'
# Import the package as soon as the config is read (Config.fromfile): mmdet's
# DetInferencer loads `weights` before it builds the model, and the package
# gives every checkpoint download a timeout and one clear error. A config
# that sets its own custom_imports should list 'mmdet_conddetr' too.
custom_imports = dict(imports=['mmdet_conddetr'], allow_failed_imports=False)

# ----------------------------------------------------------------- model size
embed_dims = 128  # transformer width
num_heads = 8
ffn_channels = 512  # hidden size of the transformer FFNs
num_encoder_layers = 2
num_decoder_layers = 3
# The images hold at most 4 objects, but 50 queries learn faster than 20 (val
# mAP at epoch 40 without the lr drop: 0.384 against 0.322; the decoder and
# the matching are a small part of an iteration).
num_queries = 50
dropout = 0.0  # tiny data, tiny model, short schedule: no dropout

data_preprocessor = dict(
    type='mmdet.DetDataPreprocessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_size_divisor=1)

# ResNet-18 at half width (32 base channels instead of 64), trained from
# scratch (no download: init_cfg=None). Only the first two stages are used:
# their stride-8 output is an 8x8 feature map for the 64 px input
# (_base_/shapes_dataset.py). Measured on the 2-core machine (the log of these
# choices is in the README's demo section): 128 px inputs with three stages
# learn no faster per epoch and cost 2.5x the time per iteration, width 256
# costs 2x the width-128 time. Learning rates of 3e-4 and 4e-4 for the whole
# model end lower than 2e-4, 1e-3 stalls (the backbone alone learns best at
# 10x, see optim_wrapper); cosine decay, EMA of the weights, batch 4 and
# vertical/diagonal flips all slowed the climb within this budget.
backbone = dict(
    type='mmdet.ResNet',
    depth=18,
    base_channels=32,
    stem_channels=32,
    num_stages=2,
    strides=(1, 2),
    dilations=(1, 1),
    out_indices=(1, ),
    frozen_stages=-1,
    norm_cfg=dict(type='BN', requires_grad=True),
    norm_eval=False,
    style='pytorch',
    init_cfg=None)
backbone_out_channels = 64  # channels of the half-width stage 2

neck = dict(
    type='mmdet.ChannelMapper',
    in_channels=[backbone_out_channels],
    kernel_size=1,
    out_channels=embed_dims,
    act_cfg=None,
    norm_cfg=None,
    num_outs=1)

# ------------------------------------------------------------------- schedule
# The full schedule, 8500 iterations; `make demo` trains as many of its
# epochs as fit its time on the machine (tools/demo/demo_budget.py).
max_epochs = 68  # of 1000 images
lr_drop_epoch = 62  # lr x0.1 for the last epochs
lr = 2e-4
clip_max_norm = 0.1
# The backbone learns from scratch at 10x the transformer's lr (the COCO
# recipe's pretrained backbone gets 0.1x): val mAP at epoch 40 of the
# 40-epoch plan (drop at 36) 0.378 with 1x, 0.497 with 5x, 0.541 with 10x;
# 20x starts slower (0.364 against 0.416 at epoch 32). Two parameter groups
# (not mmengine's one per tensor, ~9 % of an iteration here).
backbone_lr_mult = 10.0
optim_wrapper = dict(
    type='OptimWrapper',
    constructor='mmdet_conddetr.MergedGroupsOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=lr, weight_decay=1e-4, fused=True),
    clip_grad=dict(max_norm=clip_max_norm, norm_type=2),
    paramwise_cfg=dict(
        custom_keys={'backbone': dict(lr_mult=backbone_lr_mult)}))
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=0.1,
        by_epoch=False,
        begin=0,
        end=100),
    dict(
        type='MultiStepLR',
        by_epoch=True,
        begin=0,
        end=max_epochs,
        milestones=[lr_drop_epoch],
        gamma=0.1)
]
# Validation (200 images, ~2 s) every 4 epochs: 17 points for the
# convergence figure at half the cost of every 2.
train_cfg = dict(
    type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=4)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

# lr above is for 1 process x 8 images per batch
auto_scale_lr = dict(enable=False, base_batch_size=8)

# ------------------------------------------------------------------- runtime
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=25),
    checkpoint=dict(
        # crash-safe writes (kill -9, full disk); scoped name because
        # mmdet's default_runtime gives this dict _scope_='mmdet'
        type='mmdet_conddetr.AtomicCheckpointHook',
        interval=1,
        max_keep_ckpts=2,
        save_best='coco/bbox_mAP',
        rule='greater'),
    # TF32 matmuls for float32 on Ampere+ GPUs, no effect elsewhere
    tf32=dict(type='mmdet_conddetr.TF32Hook', allow_tf32=True))
# Stop with a clear error on a NaN/inf loss (action='skip' skips the step);
# refuse a checkpoint (load_from, resume, tools/test.py) that does not fit the
# model instead of loading it partly (a class head of another size is
# tolerated when fine-tuning with load_from). Scoped names: the same hooks
# from every entry point.
custom_hooks = [
    dict(type='mmdet_conddetr.NonFiniteLossHook', action='raise'),
    dict(type='mmdet_conddetr.CheckpointMatchHook'),
]
log_processor = dict(type='LogProcessor', window_size=25, by_epoch=True)
randomness = dict(seed=0)
