"""detrex's layout (IDEA-Research/detrex, ``projects/conditional_detr``).

Files are detectron2 checkpoints, ``{'model': state_dict, ...}``. detrex's
``ConditionalDETR`` keeps the official top-level names (``input_proj``,
``query_embed``, ``class_embed`` with 80 rows, ``bbox_embed``,
``transformer.*``) but builds its transformer from detrex's generic layers:

* encoder layer ``N``: ``attentions.0.attn.in_proj_weight/in_proj_bias`` and
  ``attentions.0.attn.out_proj`` (detrex's ``MultiheadAttention`` wraps
  ``nn.MultiheadAttention`` as ``attn``), ``ffns.0.layers.0.0`` and
  ``ffns.0.layers.1`` (detrex's ``FFN``), ``norms.0/1``;
* decoder layer ``N``: ``attentions.0`` (``ConditionalSelfAttention``) and
  ``attentions.1`` (``ConditionalCrossAttention``) with
  ``query_content_proj``, ``query_pos_proj`` (layer 0 only in the cross
  attention), ``query_pos_sine_proj`` (cross only), ``key_content_proj``,
  ``key_pos_proj``, ``value_proj``, ``out_proj``; ``ffns.0.layers.0.0/1``,
  ``norms.0/1/2``; the final norm is ``transformer.decoder.post_norm_layer``.

The backbone of the R50/R101 configs is detectron2's ResNet with FrozenBN:
``backbone.stem.conv1`` (+ ``.norm``), ``backbone.res2..res5.<block>.
conv1..3`` (+ ``.norm``), ``shortcut`` (+ ``.norm``); the DC5 configs use
``TorchvisionResNet``, i.e. ``backbone.body.<torchvision names>``. Both are
read; exports use the detectron2 names.

This is the renaming detrex's own ``projects/conditional_detr/converter.py``
applies to the official weights (its published ``converted_*`` files), here
as ``detrex <-> official``; detrex's own trained weights share the layout.
"""
from dataclasses import replace

from ..keymap import KeyMap
from .official import ViaOfficialLayout
from .rules import (CROSS_ATTN_PROJ, OFFICIAL_NAMES, resnet_rules,
                    transformer_rules)

__all__ = ['DetrexLayout', 'DETREX_TO_OFFICIAL']

_OFFICIAL_BACKBONE = 'backbone.0.body'

DETREX_NAMES = replace(
    OFFICIAL_NAMES,
    top=OFFICIAL_NAMES.top[:3] + ('transformer.decoder.post_norm_layer', ) +
    OFFICIAL_NAMES.top[4:],
    in_proj='attentions.0.attn.in_proj_{w}',
    encoder=('attentions.0.attn.out_proj', 'ffns.0.layers.0.0',
             'ffns.0.layers.1', 'norms.0', 'norms.1'),
    projections=('attentions.0.{}', 'attentions.1.{}'),
    proj_names=dict(
        zip(CROSS_ATTN_PROJ,
            ('query_content_proj', 'query_pos_proj', 'key_content_proj',
             'key_pos_proj', 'value_proj', 'query_pos_sine_proj'))),
    decoder=('attentions.0.out_proj', 'attentions.1.out_proj',
             'ffns.0.layers.0.0', 'ffns.0.layers.1', 'norms.0', 'norms.1',
             'norms.2'))


def _detectron2_resnet_rules():
    """detectron2's ResNet -> torchvision names under the official prefix
    (listed first: it is the form exports write, the inverse map taking the
    first rule that matches)."""
    tv = _OFFICIAL_BACKBONE
    rules = [
        ('backbone.stem.conv1.weight', f'{tv}.conv1.weight'),
        ('backbone.stem.conv1.norm.{bn}', f'{tv}.bn1.{{bn}}'),
    ]
    for stage in (1, 2, 3, 4):
        res = f'backbone.res{stage + 1}.{{b}}'
        layer = f'{tv}.layer{stage}.{{b}}'
        rules += [
            (f'{res}.conv{{i}}.weight', f'{layer}.conv{{i}}.weight'),
            (f'{res}.conv{{i}}.norm.{{bn}}', f'{layer}.bn{{i}}.{{bn}}'),
            (f'{res}.shortcut.weight', f'{layer}.downsample.0.weight'),
            (f'{res}.shortcut.norm.{{bn}}', f'{layer}.downsample.1.{{bn}}'),
        ]
    return rules


#: detrex -> official (renaming only).
DETREX_TO_OFFICIAL = KeyMap(
    _detectron2_resnet_rules() +
    # TorchvisionResNet (detrex's DC5 configs): same names, other prefix.
    resnet_rules('backbone.body', _OFFICIAL_BACKBONE) +
    transformer_rules(DETREX_NAMES, OFFICIAL_NAMES))


class DetrexLayout(ViaOfficialLayout):
    to_official = DETREX_TO_OFFICIAL
    name = 'detrex'
    title = 'detrex (IDEA-Research/detrex projects/conditional_detr)'
    required = (r'^transformer\.decoder\.layers\.\d+\.attentions\.1\.'
                r'query_pos_sine_proj\.weight$', )
    class_rows = 80
    container = 'model'
