"""This package's own layout (``mmdet_conddetr.ConditionalDETR``).

:class:`NativeLayout` only validates keys when converting from it (and maps
the class rows if asked); it is listed so that auto-detection recognises our
checkpoints.

:func:`expected_keys` checks a converted state dict without building a
model: the keys it must hold are derived from the structure the state dict
itself shows (number of encoder/decoder layers, backbone blocks per stage),
assuming the model of the configs in ``configs/conditional_detr``: a
Bottleneck ResNet (mmdet ``ResNet``/``ResNetDC5``, BN with
``num_batches_tracked``), a one-level ``ChannelMapper`` neck, the
encoder/decoder of :mod:`mmdet_conddetr.models` and a ``ConditionalDETRHead``
with a 3-layer box MLP. When a model is at hand, compare against its own
``state_dict()`` keys instead (``target_keys``).
"""
import re
from collections import OrderedDict
from typing import Dict, Iterable, List, Mapping, Set

import torch

from ..keymap import Converted
from . import Layout
from .rules import CROSS_ATTN_PROJ, SELF_ATTN_PROJ

__all__ = [
    'NativeLayout', 'NATIVE', 'CLASS_WEIGHT', 'CLASS_BIAS', 'expected_keys',
    'fill_num_batches_tracked', 'drop_num_batches_tracked', 'class_rows'
]

#: Name of this package's own layout.
NATIVE = 'mmdet_conddetr'

CLASS_WEIGHT = 'bbox_head.fc_cls.weight'
CLASS_BIAS = 'bbox_head.fc_cls.bias'

_BN = ('weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked')
_WB = ('weight', 'bias')
# Every layer's attention projections (the cross-attention's qpos_proj is in
# the first layer only).
_SELF_ATTN = tuple(f'{name}_proj' for name in SELF_ATTN_PROJ) + ('out_proj', )
_CROSS_ATTN = tuple(f'{name}_proj' for name in CROSS_ATTN_PROJ
                    if name != 'qpos') + ('out_proj', )


def _indices(keys: Iterable[str], pattern: str) -> Dict[str, Set[int]]:
    """Group the integer captured by ``(\\d+)`` in ``pattern`` by the text
    captured by its first group (or '' if there is none)."""
    found: Dict[str, Set[int]] = {}
    regex = re.compile(pattern)
    for key in keys:
        match = regex.match(key)
        if match:
            groups = match.groups()
            group = groups[0] if len(groups) > 1 else ''
            found.setdefault(group, set()).add(int(groups[-1]))
    return found


def _count(indices: Set[int]) -> int:
    # Missing indices below the largest one are reported as missing keys.
    return max(indices) + 1 if indices else 0


def expected_keys(state_dict: Mapping[str, object]) -> Set[str]:
    """The keys our model needs, for the structure ``state_dict`` shows."""
    keys = list(state_dict)
    expected = set()
    add = expected.update

    add(['backbone.conv1.weight'])
    add(f'backbone.bn1.{p}' for p in _BN)
    blocks = _indices(keys, r'backbone\.layer(\d+)\.(\d+)\.')
    for stage in range(1, 5):
        for block in range(_count(blocks.get(str(stage), set()))):
            prefix = f'backbone.layer{stage}.{block}'
            for conv in (1, 2, 3):
                add([f'{prefix}.conv{conv}.weight'])
                add(f'{prefix}.bn{conv}.{p}' for p in _BN)
            if block == 0:
                add([f'{prefix}.downsample.0.weight'])
                add(f'{prefix}.downsample.1.{p}' for p in _BN)
        if not blocks.get(str(stage)):
            # No block at all: require the first one so the gap is reported.
            add([f'backbone.layer{stage}.0.conv1.weight'])

    add(f'neck.convs.0.conv.{p}' for p in _WB)
    add(['query_embedding.weight'])

    num_enc = _count(
        _indices(keys, r'encoder\.layers\.(\d+)\.').get('', set())) or 1
    for index in range(num_enc):
        prefix = f'encoder.layers.{index}'
        for module in ('self_attn.in_proj', 'self_attn.out_proj',
                       'ffn.linear1', 'ffn.linear2', 'norm1', 'norm2'):
            add(f'{prefix}.{module}.{p}' for p in _WB)

    num_dec = _count(
        _indices(keys, r'decoder\.layers\.(\d+)\.').get('', set())) or 1
    for index in range(num_dec):
        prefix = f'decoder.layers.{index}'
        modules = [f'self_attn.{name}' for name in _SELF_ATTN]
        modules += [f'cross_attn.{name}' for name in _CROSS_ATTN]
        if index == 0:
            modules.append('cross_attn.qpos_proj')
        modules += ['ffn.linear1', 'ffn.linear2', 'norm1', 'norm2', 'norm3']
        for module in modules:
            add(f'{prefix}.{module}.{p}' for p in _WB)
    for mlp in ('query_scale', 'ref_point_head'):
        for layer in (0, 1):
            add(f'decoder.{mlp}.layers.{layer}.{p}' for p in _WB)
    add(f'decoder.post_norm.{p}' for p in _WB)

    add([CLASS_WEIGHT, CLASS_BIAS])
    for layer in (0, 1, 2):
        add(f'bbox_head.fc_reg.layers.{layer}.{p}' for p in _WB)
    return expected


def fill_num_batches_tracked(
        state_dict: Mapping[str, object]) -> 'tuple[OrderedDict, List[str]]':
    """Add a zero ``num_batches_tracked`` next to every BN ``running_var``
    that lacks one (frozen BN layouts have none; mmdet's BN has it).

    Returns:
        tuple: The new state dict and the keys that were added.
    """
    out, added = OrderedDict(), []
    for key, value in state_dict.items():
        out[key] = value
        if key.endswith('.running_var'):
            counter = key[:-len('running_var')] + 'num_batches_tracked'
            if counter not in state_dict:
                out[counter] = torch.tensor(0, dtype=torch.long)
                added.append(counter)
    return out, added


def drop_num_batches_tracked(
        state_dict: Mapping[str, object]) -> 'OrderedDict[str, object]':
    """Remove the BN step counters (for frozen-BN layouts)."""
    return OrderedDict((key, value) for key, value in state_dict.items()
                       if not key.endswith('.num_batches_tracked'))


def class_rows(state_dict: Mapping[str, object]) -> int:
    """Number of rows of our class head in ``state_dict`` (-1 if absent)."""
    weight = state_dict.get(CLASS_WEIGHT)
    return -1 if weight is None else int(weight.shape[0])


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
    class_rows = 80
    frozen_bn = False
    container = 'state_dict'

    def to_native(self, state_dict):
        return _identity(state_dict)

    def from_native(self, state_dict):
        return _identity(state_dict)
