# Conditional DETR on the synthetic shapes data, trained from scratch on a
# CPU in minutes (`make demo`). Same data, backbone, width, depth, queries,
# optimiser and schedule as the plain-DETR baseline shapes_demo_detr.py: only
# the decoder's cross-attention, the head and its losses differ.
#
#   python tools/misc/make_shapes_dataset.py --out data/shapes
#   python tools/train.py configs/conditional_detr/shapes_demo.py
_base_ = [
    './_base_/shapes_dataset.py',
    './_base_/shapes_schedule.py',
]
default_scope = 'mmdet_conddetr'

_layer = dict(
    embed_dims=_base_.embed_dims,
    num_heads=_base_.num_heads,
    feedforward_dims=_base_.ffn_channels,
    dropout=_base_.dropout)
model = dict(
    # Built in this package's scope whatever the caller's default scope is
    # (e.g. mmdet's DetInferencer, whose scope is 'mmdet' unless told).
    _scope_='mmdet_conddetr',
    type='ConditionalDETR',
    num_queries=_base_.num_queries,
    data_preprocessor=_base_.data_preprocessor,
    backbone=_base_.backbone,
    neck=_base_.neck,
    encoder=dict(num_layers=_base_.num_encoder_layers, layer_cfg=_layer),
    decoder=dict(num_layers=_base_.num_decoder_layers, layer_cfg=_layer),
    positional_encoding=dict(
        num_feats=_base_.embed_dims // 2, normalize=True),
    bbox_head=dict(
        type='ConditionalDETRHead',
        num_classes=len(_base_.classes),
        embed_dims=_base_.embed_dims),
    train_cfg=dict(assigner=dict(type='BatchedHungarianAssigner')),
    test_cfg=dict(max_per_img=100))
