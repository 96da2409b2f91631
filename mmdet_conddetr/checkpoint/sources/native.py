"""This package's own layout (``mmdet_conddetr.ConditionalDETR``).

Converting from it only validates the keys (and maps the class rows if
asked); it is listed so that auto-detection can recognise our checkpoints.
"""
from ..keymap import Converted
from . import Layout

__all__ = ['NativeLayout']


def _identity(state_dict) -> Converted:
    result = Converted()
    for key, value in state_dict.items():
        result.put(key, value, key)
    return result


class NativeLayout(Layout):
    name = 'mmdet_conddetr'
    title = 'mmdet_conddetr (this package)'
    required = (r'^encoder\.layers\.\d+\.self_attn\.in_proj\.weight$',
                r'^decoder\.layers\.\d+\.cross_attn\.qpos_sine_proj\.'
                r'weight$')
    example = 'encoder.layers.0.self_attn.in_proj.weight'
    class_rows = 80
    frozen_bn = False
    container = 'state_dict'

    def to_native(self, state_dict):
        return _identity(state_dict)

    def from_native(self, state_dict):
        return _identity(state_dict)
