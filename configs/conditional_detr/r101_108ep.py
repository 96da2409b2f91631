# Conditional DETR R101, the paper's 108-epoch schedule (paper: 44.5 AP).
_base_ = './r50_108ep.py'
model = dict(
    backbone=dict(
        depth=101,
        init_cfg=dict(
            checkpoint='https://download.pytorch.org/models/'
            'resnet101-63fe2227.pth')))
