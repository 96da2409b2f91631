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
from ..keymap import KeyMap, chain
from . import Layout

__all__ = ['OfficialLayout', 'OFFICIAL_TO_NATIVE']

_SELF_ATTN = ('qcontent_proj', 'qpos_proj', 'kcontent_proj', 'kpos_proj',
              'v_proj')
_CROSS_ATTN = ('qcontent_proj', 'qpos_proj', 'kcontent_proj', 'kpos_proj',
               'v_proj', 'qpos_sine_proj')


def _rules():
    body, enc, dec = ('backbone.0.body', 'transformer.encoder.layers.{n}',
                      'transformer.decoder.layers.{n}')
    rules = [
        (f'{body}.conv1.weight', 'backbone.conv1.weight'),
        (f'{body}.bn1.{{bn}}', 'backbone.bn1.{bn}'),
        (f'{body}.layer{{s}}.{{b}}.conv{{i}}.weight',
         'backbone.layer{s}.{b}.conv{i}.weight'),
        (f'{body}.layer{{s}}.{{b}}.bn{{i}}.{{bn}}',
         'backbone.layer{s}.{b}.bn{i}.{bn}'),
        (f'{body}.layer{{s}}.{{b}}.downsample.0.weight',
         'backbone.layer{s}.{b}.downsample.0.weight'),
        (f'{body}.layer{{s}}.{{b}}.downsample.1.{{bn}}',
         'backbone.layer{s}.{b}.downsample.1.{bn}'),
        ('input_proj.{w}', 'neck.convs.0.conv.{w}'),
        ('query_embed.weight', 'query_embedding.weight'),
        ('class_embed.{w}', 'bbox_head.fc_cls.{w}'),
        ('bbox_embed.layers.{m}.{w}', 'bbox_head.fc_reg.layers.{m}.{w}'),
        (f'{enc}.self_attn.in_proj_weight',
         'encoder.layers.{n}.self_attn.in_proj.weight'),
        (f'{enc}.self_attn.in_proj_bias',
         'encoder.layers.{n}.self_attn.in_proj.bias'),
        (f'{enc}.self_attn.out_proj.{{w}}',
         'encoder.layers.{n}.self_attn.out_proj.{w}'),
    ]
    for module, ours in (('linear1', 'ffn.linear1'),
                         ('linear2', 'ffn.linear2'), ('norm1', 'norm1'),
                         ('norm2', 'norm2')):
        rules.append((f'{enc}.{module}.{{w}}',
                      f'encoder.layers.{{n}}.{ours}.{{w}}'))
    for name in _SELF_ATTN:
        rules.append((f'{dec}.sa_{name}.{{w}}',
                      f'decoder.layers.{{n}}.self_attn.{name}.{{w}}'))
    for name in _CROSS_ATTN:
        rules.append((f'{dec}.ca_{name}.{{w}}',
                      f'decoder.layers.{{n}}.cross_attn.{name}.{{w}}'))
    for module, ours in (('self_attn.out_proj', 'self_attn.out_proj'),
                         ('cross_attn.out_proj', 'cross_attn.out_proj'),
                         ('linear1', 'ffn.linear1'),
                         ('linear2', 'ffn.linear2'),
                         ('norm1', 'norm1'), ('norm2', 'norm2'),
                         ('norm3', 'norm3')):
        rules.append((f'{dec}.{module}.{{w}}',
                      f'decoder.layers.{{n}}.{ours}.{{w}}'))
    rules += [
        ('transformer.decoder.norm.{w}', 'decoder.post_norm.{w}'),
        ('transformer.decoder.query_scale.layers.{m}.{w}',
         'decoder.query_scale.layers.{m}.{w}'),
        ('transformer.decoder.ref_point_head.layers.{m}.{w}',
         'decoder.ref_point_head.layers.{m}.{w}'),
    ]
    return rules


#: official -> this package (renaming only).
OFFICIAL_TO_NATIVE = KeyMap(_rules())
_NATIVE_TO_OFFICIAL = OFFICIAL_TO_NATIVE.inverse()


class OfficialLayout(Layout):
    name = 'official'
    title = 'official Conditional DETR (Atten4Vis/ConditionalDETR)'
    required = (r'^transformer\.decoder\.layers\.\d+\.ca_qpos_sine_proj\.'
                r'weight$', )
    example = 'transformer.decoder.layers.0.ca_qpos_sine_proj.weight'
    class_rows = 91
    frozen_bn = True
    container = 'model'

    def to_native(self, state_dict):
        return OFFICIAL_TO_NATIVE.convert(state_dict)

    def from_native(self, state_dict):
        return _NATIVE_TO_OFFICIAL.convert(state_dict)


def official_then_native(converted):
    """Chain an ``X -> official`` result with ``official -> ours``."""
    return chain(converted, OFFICIAL_TO_NATIVE.convert(converted.state_dict))


def native_then_official(state_dict):
    """``ours -> official`` (the first step of every ``ours -> X``)."""
    return _NATIVE_TO_OFFICIAL.convert(state_dict)
