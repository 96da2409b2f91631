# Conditional DETR DC5-R101, 50 epochs (official: 45.0 AP).
_base_ = './r101_50ep.py'
model = dict(backbone=dict(type='ResNetDC5'))
