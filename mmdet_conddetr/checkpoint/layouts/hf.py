"""Hugging Face transformers' layout (``ConditionalDetrForObjectDetection``).

Two spellings exist and both are read:

* the files on the hub (``microsoft/conditional-detr-resnet-50``), written by
  transformers' ``convert_conditional_detr_original_pytorch_checkpoint_to_
  pytorch.py`` and still what ``save_pretrained`` writes in transformers 5:
  ``model.backbone.conv_encoder.model.*`` (the backbone), ``model.
  input_projection``, ``model.query_position_embeddings``, encoder layer
  ``self_attn.{q,k,v,out}_proj``, ``fc1``, ``fc2``, ``self_attn_layer_norm``,
  ``final_layer_norm``; decoder layer ``sa_*``/``ca_*`` projections as in the
  official code, ``self_attn.out_proj``, ``encoder_attn.out_proj``,
  ``fc1/fc2``, ``self_attn_layer_norm``, ``encoder_attn_layer_norm``,
  ``final_layer_norm``; ``model.decoder.layernorm``, ``.query_scale``,
  ``.ref_point_head``; ``class_labels_classifier`` (91 rows, COCO ids) and
  ``bbox_predictor``;
* the in-memory names of transformers 5 (``model.state_dict()``), which its
  ``conversion_mapping.py`` maps to and from the above: ``model.backbone.
  model.*``, ``o_proj`` for ``out_proj``, ``mlp.fc1/fc2``, and the decoder
  projections inside ``self_attn.{q_content,q_pos,k_content,k_pos,v}_proj``
  and ``encoder_attn.{q_content,q_pos,k_content,k_pos,v,q_pos_sine}_proj``.

The backbone is timm's ResNet for the hub models (torchvision names:
``conv1``, ``bn1``, ``layer1..4``, ``downsample.0/1``) or transformers' own
``ResNetBackbone`` (``embedder.embedder.{convolution,normalization}``,
``encoder.stages.S.layers.B.layer.{0,1,2}`` and ``.shortcut``), both with
frozen BN (no ``num_batches_tracked``). Exports use the hub spelling with
timm names, as the published checkpoint.

The encoder's q/k/v projections are the three row blocks of the official
fused ``in_proj`` (q, k, v in that order), as in transformers' converter.
"""
import re
from dataclasses import replace

import torch

from ..keymap import Converted, KeyMap, chain
from .official import ViaOfficialLayout
from .rules import (CROSS_ATTN_PROJ, OFFICIAL_NAMES, resnet_rules,
                    transformer_rules)

__all__ = ['HFLayout', 'HF_TO_OFFICIAL', 'HF5_TO_HUB']

_HF5_BACKBONE = 'model.backbone.model.'
_HUB_BACKBONE = 'model.backbone.conv_encoder.model.'
_OFFICIAL_BACKBONE = 'backbone.0.body'

#: The hub spelling (the encoder's q/k/v fused beforehand into the non-HF
#: name ``self_attn.in_proj_{w}``).
HUB_NAMES = replace(
    OFFICIAL_NAMES,
    encoder_layer='model.encoder.layers.{n}',
    encoder=('self_attn.out_proj', 'fc1', 'fc2', 'self_attn_layer_norm',
             'final_layer_norm'),
    decoder_layer='model.decoder.layers.{n}',
    query='model.query_position_embeddings.weight',
    top=('model.input_projection', 'class_labels_classifier',
         'bbox_predictor.layers.{m}', 'model.decoder.layernorm',
         'model.decoder.query_scale.layers.{m}',
         'model.decoder.ref_point_head.layers.{m}'),
    decoder=('self_attn.out_proj', 'encoder_attn.out_proj', 'fc1', 'fc2',
             'self_attn_layer_norm', 'encoder_attn_layer_norm',
             'final_layer_norm'))

#: transformers 5's in-memory names, where they differ from the hub's.
HF5_NAMES = replace(
    HUB_NAMES,
    encoder=('self_attn.o_proj', 'mlp.fc1', 'mlp.fc2',
             'self_attn_layer_norm', 'final_layer_norm'),
    projections=('self_attn.{}', 'encoder_attn.{}'),
    # transformers 5 splits the official short names after their first
    # letter: q_content_proj, ..., v_proj, q_pos_sine_proj.
    proj_names={
        name: f'{name[0]}_{name[1:]}_proj'
        for name in CROSS_ATTN_PROJ if len(name) > 1
    },
    decoder=('self_attn.o_proj', 'encoder_attn.o_proj', 'mlp.fc1', 'mlp.fc2',
             'self_attn_layer_norm', 'encoder_attn_layer_norm',
             'final_layer_norm'))

#: transformers 5 in-memory names -> hub names (applied with passthrough).
HF5_TO_HUB = KeyMap(transformer_rules(HF5_NAMES, HUB_NAMES))


def _resnet_backbone_rules():
    """transformers' own ``ResNetBackbone`` -> torchvision names."""
    hub, tv = _HUB_BACKBONE.rstrip('.'), _OFFICIAL_BACKBONE
    rules = [
        (f'{hub}.embedder.embedder.convolution.weight', f'{tv}.conv1.weight'),
        (f'{hub}.embedder.embedder.normalization.{{bn}}', f'{tv}.bn1.{{bn}}'),
    ]
    for stage in (1, 2, 3, 4):
        block = f'{hub}.encoder.stages.{stage - 1}.layers.{{b}}'
        layer = f'{tv}.layer{stage}.{{b}}'
        for conv in (1, 2, 3):
            rules += [
                (f'{block}.layer.{conv - 1}.convolution.weight',
                 f'{layer}.conv{conv}.weight'),
                (f'{block}.layer.{conv - 1}.normalization.{{bn}}',
                 f'{layer}.bn{conv}.{{bn}}'),
            ]
        rules += [
            (f'{block}.shortcut.convolution.weight',
             f'{layer}.downsample.0.weight'),
            (f'{block}.shortcut.normalization.{{bn}}',
             f'{layer}.downsample.1.{{bn}}'),
        ]
    return rules


#: hub names (with the encoder q/k/v fused) -> official.
HF_TO_OFFICIAL = KeyMap(
    # timm's ResNet has torchvision's names (the exported form: first).
    resnet_rules(_HUB_BACKBONE.rstrip('.'), _OFFICIAL_BACKBONE) +
    _resnet_backbone_rules() + transformer_rules(HUB_NAMES, OFFICIAL_NAMES))

_QKV = re.compile(r'(model\.encoder\.layers\.\d+\.self_attn)\.([qkv])_proj\.'
                  r'(weight|bias)')


def _to_hub_names(state_dict) -> Converted:
    """transformers 5 names -> hub names; hub names pass through."""
    backbone = Converted()
    for key, value in state_dict.items():
        new_key = key
        if key.startswith(_HF5_BACKBONE):
            new_key = _HUB_BACKBONE + key[len(_HF5_BACKBONE):]
        backbone.put(new_key, value, key)
    return chain(backbone,
                 HF5_TO_HUB.convert(backbone.state_dict, passthrough=True))


def _fuse_qkv(converted: Converted) -> Converted:
    """Concatenate each encoder layer's q, k, v projections (rows q|k|v)
    into ``self_attn.in_proj_weight/bias``. Incomplete triples are left
    unfused, so they show up as unexpected keys."""
    groups = {}
    for key in converted.state_dict:
        match = _QKV.fullmatch(key)
        if match:
            prefix, which, field = match.groups()
            groups.setdefault((prefix, field), {})[which] = key
    fused = Converted()
    fused.unmatched = list(converted.unmatched)
    done = set()
    for key, value in converted.state_dict.items():
        match = _QKV.fullmatch(key)
        if match is None:
            fused.put(key, value, converted.origin[key])
            continue
        prefix, _, field = match.groups()
        group = groups[(prefix, field)]
        if sorted(group) != ['k', 'q', 'v']:
            fused.put(key, value, converted.origin[key])
            continue
        if (prefix, field) in done:
            continue
        done.add((prefix, field))
        parts = [converted.state_dict[group[which]] for which in 'qkv']
        fused.put(f'{prefix}.in_proj_{field}', torch.cat(parts, dim=0),
                  converted.origin[group['q']])
    return fused


def _split_qkv(converted: Converted) -> Converted:
    """Inverse of :func:`_fuse_qkv` on hub names."""
    regex = re.compile(r'(model\.encoder\.layers\.\d+\.self_attn)\.'
                       r'in_proj_(weight|bias)')
    split = Converted()
    split.unmatched = list(converted.unmatched)
    for key, value in converted.state_dict.items():
        match = regex.fullmatch(key)
        if match is None:
            split.put(key, value, converted.origin[key])
            continue
        prefix, field = match.groups()
        for which, part in zip('qkv', value.chunk(3, dim=0)):
            split.put(f'{prefix}.{which}_proj.{field}', part.clone(),
                      converted.origin[key])
    return split


class HFLayout(ViaOfficialLayout):
    """Hub files hold the encoder's q/k/v apart: fused before the renaming to
    the official names, split after the renaming back."""
    to_official = HF_TO_OFFICIAL
    name = 'hf'
    title = 'Hugging Face transformers ConditionalDetrForObjectDetection'
    required = (r'^model\.decoder\.layers\.\d+\.(ca_qpos_sine_proj|'
                r'encoder_attn\.q_pos_sine_proj)\.weight$', )
    class_rows = 91
    container = None

    def to_native(self, state_dict):
        hub = _fuse_qkv(_to_hub_names(state_dict))
        return chain(hub, super().to_native(hub.state_dict))

    def from_native(self, state_dict):
        return _split_qkv(super().from_native(state_dict))
