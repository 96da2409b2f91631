# Conditional DETR DC5-R50, the paper's 108-epoch schedule (paper: 45.1 AP).
_base_ = './r50_108ep.py'
model = dict(backbone=dict(type='ResNetDC5'))
