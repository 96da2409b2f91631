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
from dataclasses import replace

from ..keymap import KeyMap
from . import Layout
from .rules import NATIVE_NAMES, resnet_rules, transformer_rules

__all__ = ['MMDetLayout', 'MMDET_TO_NATIVE']

MMDET_NAMES = replace(
    NATIVE_NAMES,
    # the box MLP is mapped below: mmdet splits it in two modules
    top=NATIVE_NAMES.top[:2] + (None, ) + NATIVE_NAMES.top[3:],
    in_proj='self_attn.attn.in_proj_{w}',
    encoder=('self_attn.attn.out_proj', 'ffn.layers.0.0', 'ffn.layers.1',
             'norms.0', 'norms.1'),
    decoder=('self_attn.out_proj', 'cross_attn.out_proj', 'ffn.layers.0.0',
             'ffn.layers.1', 'norms.0', 'norms.1', 'norms.2'))

_BOX_MLP = [
    ('bbox_head.reg_ffn.layers.0.0.{w}', 'bbox_head.fc_reg.layers.0.{w}'),
    ('bbox_head.reg_ffn.layers.1.{w}', 'bbox_head.fc_reg.layers.1.{w}'),
    ('bbox_head.fc_reg.{w}', 'bbox_head.fc_reg.layers.2.{w}'),
]

#: mmdet -> this package (renaming only).
MMDET_TO_NATIVE = KeyMap(
    resnet_rules('backbone', 'backbone') + _BOX_MLP +
    transformer_rules(MMDET_NAMES, NATIVE_NAMES))


class MMDetLayout(Layout):
    name = 'mmdet'
    title = "MMDetection 3.x's built-in ConditionalDETR"
    # mmdet's DETR has the same encoder and head: require the conditional
    # decoder too.
    required = (r'^encoder\.layers\.\d+\.self_attn\.attn\.in_proj_weight$',
                r'^decoder\.layers\.\d+\.cross_attn\.qpos_sine_proj\.'
                r'weight$')
    class_rows = 80
    frozen_bn = False
    container = 'state_dict'
    renaming = MMDET_TO_NATIVE
