# Conditional DETR DC5-R50, 50 epochs (official: 43.7 AP). Stride 16: the last
# stage is dilated the torchvision way (see ResNetDC5).
_base_ = './r50_50ep.py'
model = dict(backbone=dict(type='ResNetDC5'))
# One image per GPU, 8 GPUs: total batch 8 (official
# scripts/conddetr_r50dc5_epoch50.sh and conddetr_r101dc5_epoch50.sh,
# --batch_size 1); evaluation also one image per GPU (official README).
train_dataloader = dict(batch_size=1)
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader
auto_scale_lr = dict(base_batch_size=8)
