# Conditional DETR DC5-R50, 50 epochs (official: 43.7 AP). Stride 16: the last
# stage is dilated the torchvision way (see ResNetDC5).
_base_ = './r50_50ep.py'
model = dict(backbone=dict(type='ResNetDC5'))
