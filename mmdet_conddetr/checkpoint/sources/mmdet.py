"""MMDetection 3.x's built-in ``ConditionalDETR`` layout (``mmdet.``).

Checkpoints are mmengine files, ``{'meta', 'state_dict', ...}``, e.g.
``conditional-detr_r50_8xb2-50e_coco_20221121_180202-c83a1dc0.pth``. The
backbone (mmdet ``ResNet``, BN with ``num_batches_tracked``), the neck
(``ChannelMapper``: ``neck.convs.0.conv``), ``query_embedding``, the decoder
attentions (mmdet's ``ConditionalAttention``: ``qcontent_proj``,
``qpos_proj`` (the cross attention of layer 0 only), ``qpos_sine_proj``
(cross only), ``kcontent_proj``, ``kpos_proj``, ``v_proj``, ``out_proj``),
``decoder.post_norm``, ``query_scale``, ``ref_point_head`` and ``fc_cls``
(80 rows) already have this package's names. The rest differs:

* encoder layer ``N``: ``self_attn`` is mmcv's ``MultiheadAttention`` around
  ``nn.MultiheadAttention``, so ``self_attn.attn.in_proj_weight``,
  ``self_attn.attn.in_proj_bias``, ``self_attn.attn.out_proj``;
* every layer: the FFN is mmcv's ``FFN`` (``ffn.layers.0.0``,
  ``ffn.layers.1``) and the norms a list (``norms.0..2``);
* head: mmdet's ``DETRHead`` splits the box MLP into ``reg_ffn.layers.0.0``,
  ``reg_ffn.layers.1`` (an FFN, then a ReLU) and ``fc_reg``.
"""
from ..keymap import KeyMap
from . import Layout

__all__ = ['MMDetLayout', 'MMDET_TO_NATIVE']

_SELF_ATTN = ('qcontent_proj', 'qpos_proj', 'kcontent_proj', 'kpos_proj',
              'v_proj', 'out_proj')
_CROSS_ATTN = _SELF_ATTN + ('qpos_sine_proj', )


def _rules():
    rules = [
        ('backbone.conv1.weight', 'backbone.conv1.weight'),
        ('backbone.bn1.{bn}', 'backbone.bn1.{bn}'),
        ('backbone.layer{s}.{b}.conv{i}.weight',
         'backbone.layer{s}.{b}.conv{i}.weight'),
        ('backbone.layer{s}.{b}.bn{i}.{bn}',
         'backbone.layer{s}.{b}.bn{i}.{bn}'),
        ('backbone.layer{s}.{b}.downsample.0.weight',
         'backbone.layer{s}.{b}.downsample.0.weight'),
        ('backbone.layer{s}.{b}.downsample.1.{bn}',
         'backbone.layer{s}.{b}.downsample.1.{bn}'),
        ('neck.convs.0.conv.{w}', 'neck.convs.0.conv.{w}'),
        ('query_embedding.weight', 'query_embedding.weight'),
        ('bbox_head.fc_cls.{w}', 'bbox_head.fc_cls.{w}'),
        ('bbox_head.reg_ffn.layers.0.0.{w}', 'bbox_head.fc_reg.layers.0.{w}'),
        ('bbox_head.reg_ffn.layers.1.{w}', 'bbox_head.fc_reg.layers.1.{w}'),
        ('bbox_head.fc_reg.{w}', 'bbox_head.fc_reg.layers.2.{w}'),
        ('decoder.post_norm.{w}', 'decoder.post_norm.{w}'),
        ('decoder.query_scale.layers.{m}.{w}',
         'decoder.query_scale.layers.{m}.{w}'),
        ('decoder.ref_point_head.layers.{m}.{w}',
         'decoder.ref_point_head.layers.{m}.{w}'),
    ]
    enc = 'encoder.layers.{n}'
    rules += [
        (f'{enc}.self_attn.attn.in_proj_weight',
         f'{enc}.self_attn.in_proj.weight'),
        (f'{enc}.self_attn.attn.in_proj_bias',
         f'{enc}.self_attn.in_proj.bias'),
        (f'{enc}.self_attn.attn.out_proj.{{w}}',
         f'{enc}.self_attn.out_proj.{{w}}'),
    ]
    dec = 'decoder.layers.{n}'
    for name in _SELF_ATTN:
        rules.append((f'{dec}.self_attn.{name}.{{w}}',
                      f'{dec}.self_attn.{name}.{{w}}'))
    for name in _CROSS_ATTN:
        rules.append((f'{dec}.cross_attn.{name}.{{w}}',
                      f'{dec}.cross_attn.{name}.{{w}}'))
    for layer, norms in ((enc, 2), (dec, 3)):
        rules += [
            (f'{layer}.ffn.layers.0.0.{{w}}', f'{layer}.ffn.linear1.{{w}}'),
            (f'{layer}.ffn.layers.1.{{w}}', f'{layer}.ffn.linear2.{{w}}'),
        ]
        for index in range(norms):
            rules.append((f'{layer}.norms.{index}.{{w}}',
                          f'{layer}.norm{index + 1}.{{w}}'))
    return rules


#: mmdet -> this package (renaming only).
MMDET_TO_NATIVE = KeyMap(_rules())
_NATIVE_TO_MMDET = MMDET_TO_NATIVE.inverse()


class MMDetLayout(Layout):
    name = 'mmdet'
    title = "MMDetection 3.x's built-in ConditionalDETR"
    # mmdet's DETR has the same encoder and head: require the conditional
    # decoder too.
    required = (r'^encoder\.layers\.\d+\.self_attn\.attn\.in_proj_weight$',
                r'^decoder\.layers\.\d+\.cross_attn\.qpos_sine_proj\.'
                r'weight$')
    example = 'encoder.layers.0.self_attn.attn.in_proj_weight'
    class_rows = 80
    frozen_bn = False
    container = 'state_dict'

    def to_native(self, state_dict):
        return MMDET_TO_NATIVE.convert(state_dict)

    def from_native(self, state_dict):
        return _NATIVE_TO_MMDET.convert(state_dict)
