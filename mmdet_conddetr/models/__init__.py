"""Models of the ``mmdet_conddetr`` scope; importing registers them."""
from .backbones import ResNetDC5
from .dense_heads import ConditionalDETRHead
from .detectors import ConditionalDETR
from .layers import (ConditionalCrossAttention, ConditionalDETRTransformerDecoder,
                     ConditionalDETRTransformerEncoder, ConditionalSelfAttention)
from .task_modules import BatchedHungarianAssigner

__all__ = [
    'ResNetDC5', 'ConditionalDETRHead', 'ConditionalDETR',
    'ConditionalCrossAttention', 'ConditionalSelfAttention',
    'ConditionalDETRTransformerDecoder', 'ConditionalDETRTransformerEncoder',
    'BatchedHungarianAssigner'
]
