# Conditional DETR R101, 50 epochs (official: 42.8 AP).
_base_ = './r50_50ep.py'
model = dict(
    backbone=dict(
        depth=101,
        init_cfg=dict(
            checkpoint='https://download.pytorch.org/models/'
            'resnet101-63fe2227.pth')))
