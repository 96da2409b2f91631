# Conditional DETR DC5-R101, the paper's 108-epoch schedule (paper: 45.9 AP).
_base_ = './r101_108ep.py'
model = dict(backbone=dict(type='ResNetDC5'))
