from .attention_maps import (collect_attention_maps, draw_attention_maps,
                             recording_cross_attention)

__all__ = [
    'collect_attention_maps', 'draw_attention_maps', 'recording_cross_attention'
]
