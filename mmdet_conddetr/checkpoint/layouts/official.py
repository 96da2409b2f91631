"""The official repository's layout (Atten4Vis/ConditionalDETR).

Checkpoints are ``{'model': state_dict, 'optimizer', 'lr_scheduler', 'epoch',
'args'}`` (``main.py``); the released files may hold only ``'model'``.
Names come from these modules of the official code:

* ``backbone.0.body.*``: torchvision's ResNet (``conv1``, ``bn1``,
  ``layer1..4.<block>.conv1..3/bn1..3/downsample.0/1``) behind
  ``IntermediateLayerGetter`` (no ``fc``), with ``FrozenBatchNorm2d``
  (``weight``, ``bias``, ``running_mean``, ``running_var``; no
  ``num_batches_tracked``). ``backbone.1`` is the sine position embedding,
  without parameters.
* ``input_proj`` (1x1 conv), ``query_embed`` (embedding), ``class_embed``
  (``Linear(d, 91)``: COCO category ids), ``bbox_embed.layers.0..2`` (MLP).
* ``transformer.encoder.layers.N``: ``self_attn`` is ``nn.MultiheadAttention``
  (fused ``in_proj_weight``/``in_proj_bias``, rows q|k|v, and ``out_proj``),
  ``linear1``, ``linear2``, ``norm1``, ``norm2``; no final encoder norm
  (post-norm).
* ``transformer.decoder.layers.N``: ``sa_{qcontent,qpos,kcontent,kpos,v}_proj``
  and ``self_attn.out_proj`` (the custom attention keeps only ``out_proj``),
  ``ca_{qcontent,qpos,kcontent,kpos,v,qpos_sine}_proj`` and
  ``cross_attn.out_proj``, ``linear1/2``, ``norm1..3``; ``ca_qpos_proj`` is
  set to None in every layer but the first.
* ``transformer.decoder.norm``, ``.query_scale.layers.0/1``,
  ``.ref_point_head.layers.0/1``.
"""
from typing import Optional

from ..keymap import KeyMap, chain
from . import Layout
from .rules import (NATIVE_NAMES, OFFICIAL_NAMES, resnet_rules,
                    transformer_rules)

__all__ = ['OfficialLayout', 'ViaOfficialLayout', 'OFFICIAL_TO_NATIVE']

#: official -> this package (renaming only).
OFFICIAL_TO_NATIVE = KeyMap(
    resnet_rules('backbone.0.body', 'backbone') +
    transformer_rules(OFFICIAL_NAMES, NATIVE_NAMES))
_NATIVE_TO_OFFICIAL = OFFICIAL_TO_NATIVE.inverse()


class OfficialLayout(Layout):
    name = 'official'
    title = 'official Conditional DETR (Atten4Vis/ConditionalDETR)'
    required = (r'^transformer\.decoder\.layers\.\d+\.ca_qpos_sine_proj\.'
                r'weight$', )
    class_rows = 91
    frozen_bn = True
    container = 'model'
    renaming = OFFICIAL_TO_NATIVE


class ViaOfficialLayout(Layout):
    """A layout renamed to the official one (``to_official``), then to ours.

    detrex's and Hugging Face's converters were written from the official
    layout, so theirs are expressed against it and composed here. Their
    published files were converted from the official weights: frozen BN.
    """
    to_official: Optional[KeyMap] = None
    frozen_bn = True

    def __init__(self) -> None:
        super().__init__()
        self._from_official = self.to_official.inverse()

    def to_native(self, state_dict):
        first = self.to_official.convert(state_dict)
        return chain(first, OFFICIAL_TO_NATIVE.convert(first.state_dict))

    def from_native(self, state_dict):
        first = _NATIVE_TO_OFFICIAL.convert(state_dict)
        return chain(first, self._from_official.convert(first.state_dict))
