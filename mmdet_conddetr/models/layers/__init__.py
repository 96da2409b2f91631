from .attention import (ConditionalCrossAttention, ConditionalSelfAttention,
                        EncoderSelfAttention)
from .transformer import (ConditionalDETRTransformerDecoder,
                          ConditionalDETRTransformerDecoderLayer,
                          ConditionalDETRTransformerEncoder,
                          ConditionalDETRTransformerEncoderLayer)

__all__ = [
    'ConditionalCrossAttention', 'ConditionalSelfAttention',
    'EncoderSelfAttention', 'ConditionalDETRTransformerDecoder',
    'ConditionalDETRTransformerDecoderLayer',
    'ConditionalDETRTransformerEncoder', 'ConditionalDETRTransformerEncoderLayer'
]
