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
from ..keymap import KeyMap, chain
from . import Layout
from .official import native_then_official, official_then_native

__all__ = ['DetrexLayout', 'DETREX_TO_OFFICIAL']

_ATTN_NAMES = (('query_content_proj', 'qcontent_proj'),
               ('query_pos_proj', 'qpos_proj'),
               ('key_content_proj', 'kcontent_proj'),
               ('key_pos_proj', 'kpos_proj'), ('value_proj', 'v_proj'))


def _rules():
    tv = 'backbone.0.body'
    rules = [
        # detectron2 ResNet (exported form first: the inverse takes the
        # first rule that matches).
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
    # TorchvisionResNet (detrex's DC5 configs): same names, other prefix.
    rules += [
        ('backbone.body.conv1.weight', f'{tv}.conv1.weight'),
        ('backbone.body.bn1.{bn}', f'{tv}.bn1.{{bn}}'),
        ('backbone.body.layer{s}.{b}.conv{i}.weight',
         f'{tv}.layer{{s}}.{{b}}.conv{{i}}.weight'),
        ('backbone.body.layer{s}.{b}.bn{i}.{bn}',
         f'{tv}.layer{{s}}.{{b}}.bn{{i}}.{{bn}}'),
        ('backbone.body.layer{s}.{b}.downsample.0.weight',
         f'{tv}.layer{{s}}.{{b}}.downsample.0.weight'),
        ('backbone.body.layer{s}.{b}.downsample.1.{bn}',
         f'{tv}.layer{{s}}.{{b}}.downsample.1.{{bn}}'),
    ]
    for name in ('input_proj.{w}', 'query_embed.weight', 'class_embed.{w}',
                 'bbox_embed.layers.{m}.{w}',
                 'transformer.decoder.query_scale.layers.{m}.{w}',
                 'transformer.decoder.ref_point_head.layers.{m}.{w}'):
        rules.append((name, name))

    enc = 'transformer.encoder.layers.{n}'
    rules += [
        (f'{enc}.attentions.0.attn.in_proj_weight',
         f'{enc}.self_attn.in_proj_weight'),
        (f'{enc}.attentions.0.attn.in_proj_bias',
         f'{enc}.self_attn.in_proj_bias'),
        (f'{enc}.attentions.0.attn.out_proj.{{w}}',
         f'{enc}.self_attn.out_proj.{{w}}'),
        (f'{enc}.ffns.0.layers.0.0.{{w}}', f'{enc}.linear1.{{w}}'),
        (f'{enc}.ffns.0.layers.1.{{w}}', f'{enc}.linear2.{{w}}'),
        (f'{enc}.norms.0.{{w}}', f'{enc}.norm1.{{w}}'),
        (f'{enc}.norms.1.{{w}}', f'{enc}.norm2.{{w}}'),
    ]
    dec = 'transformer.decoder.layers.{n}'
    for detrex_name, official_name in _ATTN_NAMES:
        rules.append((f'{dec}.attentions.0.{detrex_name}.{{w}}',
                      f'{dec}.sa_{official_name}.{{w}}'))
        rules.append((f'{dec}.attentions.1.{detrex_name}.{{w}}',
                      f'{dec}.ca_{official_name}.{{w}}'))
    rules += [
        (f'{dec}.attentions.1.query_pos_sine_proj.{{w}}',
         f'{dec}.ca_qpos_sine_proj.{{w}}'),
        (f'{dec}.attentions.0.out_proj.{{w}}',
         f'{dec}.self_attn.out_proj.{{w}}'),
        (f'{dec}.attentions.1.out_proj.{{w}}',
         f'{dec}.cross_attn.out_proj.{{w}}'),
        (f'{dec}.ffns.0.layers.0.0.{{w}}', f'{dec}.linear1.{{w}}'),
        (f'{dec}.ffns.0.layers.1.{{w}}', f'{dec}.linear2.{{w}}'),
        (f'{dec}.norms.0.{{w}}', f'{dec}.norm1.{{w}}'),
        (f'{dec}.norms.1.{{w}}', f'{dec}.norm2.{{w}}'),
        (f'{dec}.norms.2.{{w}}', f'{dec}.norm3.{{w}}'),
        ('transformer.decoder.post_norm_layer.{w}',
         'transformer.decoder.norm.{w}'),
    ]
    return rules


#: detrex -> official (renaming only).
DETREX_TO_OFFICIAL = KeyMap(_rules())
_OFFICIAL_TO_DETREX = DETREX_TO_OFFICIAL.inverse()


class DetrexLayout(Layout):
    name = 'detrex'
    title = 'detrex (IDEA-Research/detrex projects/conditional_detr)'
    required = (r'^transformer\.decoder\.layers\.\d+\.attentions\.1\.'
                r'query_pos_sine_proj\.weight$', )
    example = ('transformer.decoder.layers.0.attentions.1.'
               'query_pos_sine_proj.weight')
    class_rows = 80
    frozen_bn = True
    container = 'model'

    def to_native(self, state_dict):
        return official_then_native(DETREX_TO_OFFICIAL.convert(state_dict))

    def from_native(self, state_dict):
        first = native_then_official(state_dict)
        return chain(first, _OFFICIAL_TO_DETREX.convert(first.state_dict))
