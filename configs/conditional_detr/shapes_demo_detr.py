# Plain DETR baseline (mmdet's own implementation) on the synthetic shapes
# data, trained from scratch on a CPU in minutes. It is the reference that
# configs/conditional_detr/shapes_demo.py (Conditional DETR) is compared
# against: both inherit the same data (_base_/shapes_dataset.py) and the same
# backbone, width, depth, queries, optimiser and schedule
# (_base_/shapes_schedule.py, which also brings in mmdet's default_runtime).
#
#   python tools/misc/make_shapes_dataset.py --out data/shapes
#   python tools/train.py configs/conditional_detr/shapes_demo_detr.py
#
# Every model type carries the ``mmdet.`` prefix: the default scope is
# ``mmdet_conddetr``, whose own classes would otherwise be found first.
_base_ = [
    './_base_/shapes_dataset.py',
    './_base_/shapes_schedule.py',
]
default_scope = 'mmdet_conddetr'

_embed_dims = _base_.embed_dims
_num_heads = _base_.num_heads
_ffn = _base_.ffn_channels
_drop = _base_.dropout

model = dict(
    type='mmdet.DETR',
    num_queries=_base_.num_queries,
    data_preprocessor=_base_.data_preprocessor,
    backbone=_base_.backbone,
    neck=_base_.neck,
    encoder=dict(  # DetrTransformerEncoder
        num_layers=_base_.num_encoder_layers,
        layer_cfg=dict(
            self_attn_cfg=dict(
                embed_dims=_embed_dims,
                num_heads=_num_heads,
                dropout=_drop,
                batch_first=True),
            ffn_cfg=dict(
                embed_dims=_embed_dims,
                feedforward_channels=_ffn,
                num_fcs=2,
                ffn_drop=_drop,
                act_cfg=dict(type='ReLU', inplace=True)))),
    decoder=dict(  # DetrTransformerDecoder
        num_layers=_base_.num_decoder_layers,
        layer_cfg=dict(
            self_attn_cfg=dict(
                embed_dims=_embed_dims,
                num_heads=_num_heads,
                dropout=_drop,
                batch_first=True),
            cross_attn_cfg=dict(
                embed_dims=_embed_dims,
                num_heads=_num_heads,
                dropout=_drop,
                batch_first=True),
            ffn_cfg=dict(
                embed_dims=_embed_dims,
                feedforward_channels=_ffn,
                num_fcs=2,
                ffn_drop=_drop,
                act_cfg=dict(type='ReLU', inplace=True))),
        return_intermediate=True),
    positional_encoding=dict(num_feats=_embed_dims // 2, normalize=True),
    bbox_head=dict(
        type='mmdet.DETRHead',
        num_classes=len(_base_.classes),
        embed_dims=_embed_dims,
        loss_cls=dict(
            type='mmdet.CrossEntropyLoss',
            bg_cls_weight=0.1,
            use_sigmoid=False,
            loss_weight=1.0,
            class_weight=1.0),
        loss_bbox=dict(type='mmdet.L1Loss', loss_weight=5.0),
        loss_iou=dict(type='mmdet.GIoULoss', loss_weight=2.0)),
    train_cfg=dict(
        assigner=dict(
            type='mmdet.HungarianAssigner',
            match_costs=[
                dict(type='mmdet.ClassificationCost', weight=1.),
                dict(type='mmdet.BBoxL1Cost', weight=5.0, box_format='xywh'),
                dict(type='mmdet.IoUCost', iou_mode='giou', weight=2.0)
            ])),
    test_cfg=dict(max_per_img=_base_.num_queries))
