# Conditional DETR R50, 50 epochs, lr x0.1 after epoch 40 (official: 41.0 AP).
_base_ = './_base_/conditional_detr_r50.py'
