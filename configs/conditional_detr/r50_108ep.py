# Conditional DETR R50, the paper's 108-epoch schedule (paper: 43.0 AP).
# Meng et al., ICCV 2021, Sec. 4.1 "Training": the learning rate is dropped by
# a factor of 10 after 40 epochs for 50 training epochs and after 80 epochs for
# 108 training epochs.
_base_ = './r50_50ep.py'
max_epochs = 108
lr_drop_epoch = 80
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[lr_drop_epoch],
        gamma=0.1)
]
