"""Every layout: exact key names, round trips through ours, detection.

The official and detrex layouts cannot be produced by running their code
here (torchvision, detectron2), so they are checked against key lists and a
renaming written from their source code independently of the converter.
"""
import re
from collections import OrderedDict

import pytest
import torch

import mmdet_conddetr  # noqa: F401
from helpers.checkpoint_layouts import (  # noqa: F401 (fixtures)
    FOREIGN, assert_same, official_keys, ours_model, ours_state)
from mmdet_conddetr.checkpoint import (COCO_CATEGORY_IDS, COCO_UNUSED_IDS,
                                       PRIOR_BIAS, convert,
                                       convert_state_dict, detect_source,
                                       export_state_dict)


def detrex_converter_rename(key):
    """The renaming of detrex's projects/conditional_detr/converter.py
    (official -> detrex), re-expressed: backbone to detectron2 names, the
    encoder/decoder layers to detrex's attentions/ffns/norms lists."""
    if key.startswith('backbone.0.body.'):
        key = key[len('backbone.0.body.'):]
        if not key.startswith('layer'):
            key = 'stem.' + key
        key = re.sub(r'layer(\d)', lambda m: f'res{int(m.group(1)) + 1}', key)
        key = re.sub(r'bn(\d)', r'conv\1.norm', key)
        key = key.replace('downsample.0', 'shortcut')
        key = key.replace('downsample.1', 'shortcut.norm')
        return 'backbone.' + key
    if 'decoder' in key:
        table = [('decoder.norm', 'decoder.post_norm_layer'),
                 ('ca_kcontent_proj', 'attentions.1.key_content_proj'),
                 ('ca_kpos_proj', 'attentions.1.key_pos_proj'),
                 ('ca_qcontent_proj', 'attentions.1.query_content_proj'),
                 ('ca_qpos_sine_proj', 'attentions.1.query_pos_sine_proj'),
                 ('ca_qpos_proj', 'attentions.1.query_pos_proj'),
                 ('ca_v_proj', 'attentions.1.value_proj'),
                 ('sa_kcontent_proj', 'attentions.0.key_content_proj'),
                 ('sa_kpos_proj', 'attentions.0.key_pos_proj'),
                 ('sa_qcontent_proj', 'attentions.0.query_content_proj'),
                 ('sa_qpos_proj', 'attentions.0.query_pos_proj'),
                 ('sa_v_proj', 'attentions.0.value_proj'),
                 ('self_attn.out_proj', 'attentions.0.out_proj'),
                 ('cross_attn.out_proj', 'attentions.1.out_proj'),
                 ('linear1', 'ffns.0.layers.0.0'),
                 ('linear2', 'ffns.0.layers.1'), ('norm1', 'norms.0'),
                 ('norm2', 'norms.1'), ('norm3', 'norms.2')]
        for old, new in table:
            if old in key:
                return key.replace(old, new)
        return key
    if 'encoder' in key:
        key = key.replace('self_attn', 'attentions.0.attn')
        for old, new in (('linear1', 'ffns.0.layers.0.0'),
                         ('linear2', 'ffns.0.layers.1'), ('norm1', 'norms.0'),
                         ('norm2', 'norms.1')):
            if old in key:
                return key.replace(old, new)
    return key


def test_official_export_has_exactly_the_official_keys(ours_state):
    exported = export_state_dict(ours_state, to='official')
    assert sorted(exported) == sorted(official_keys())
    assert exported['class_embed.weight'].shape == (91, 256)
    assert exported['transformer.encoder.layers.0.self_attn.in_proj_weight'] \
        .shape == (768, 256)


def test_official_round_trip(ours_state):
    """official -> ours -> official -> ours reproduces every tensor."""
    official_1 = export_state_dict(ours_state, to='official')
    ours_1 = convert_state_dict(official_1)
    official_2 = export_state_dict(ours_1, to='official')
    ours_2 = convert_state_dict(official_2)
    assert_same(official_1, official_2)
    assert_same(ours_1, ours_2)
    # 91 -> 80 takes the rows of the COCO category ids ...
    ids = list(COCO_CATEGORY_IDS)
    assert torch.equal(ours_1['bbox_head.fc_cls.weight'],
                       official_1['class_embed.weight'][ids])
    # ... and all but the BN counters (frozen BN has none) survive.
    for key, value in ours_state.items():
        if not key.endswith('num_batches_tracked'):
            assert torch.equal(ours_1[key], value), key
    # The export fills the unused ids with the prior (and zero weights).
    unused = [0] + list(COCO_UNUSED_IDS)
    assert torch.all(official_1['class_embed.bias'][unused] == PRIOR_BIAS)
    assert official_1['class_embed.weight'][unused].abs().sum() == 0


def test_detrex_layout_matches_detrex_converter(ours_state):
    """Our detrex export equals detrex's converter applied to the official
    layout (with its 91 -> 80 class rows by COCO id)."""
    official = export_state_dict(ours_state, to='official')
    expected = OrderedDict()
    for key, value in official.items():
        if key.startswith('class_embed'):
            value = value[list(COCO_CATEGORY_IDS)]
        expected[detrex_converter_rename(key)] = value
    assert_same(export_state_dict(ours_state, to='detrex'), expected)
    assert detect_source(expected) == 'detrex'
    # detrex's DC5 configs use TorchvisionResNet: backbone.body.<tv names>
    torchvision_named = OrderedDict(
        (key.replace('backbone.0.body.', 'backbone.body.')
         if key.startswith('backbone.0.body.') else
         detrex_converter_rename(key), value)
        for key, value in official.items())
    from_tv = convert_state_dict(torchvision_named, source='detrex')
    assert_same(from_tv, convert_state_dict(expected))


@pytest.mark.parametrize('layout', FOREIGN + ('mmdet_conddetr', ))
def test_round_trip_and_detection(ours_state, layout):
    exported = export_state_dict(ours_state, to=layout)
    assert detect_source(exported) == layout
    # also inside the containers the repositories write
    assert detect_source({'model': exported, 'epoch': 1}) == layout
    result = convert(exported)
    assert result.source == layout and result.detected
    assert result.num_classes == 80
    frozen = layout in ('official', 'detrex', 'hf')
    for key, value in ours_state.items():
        if frozen and key.endswith('num_batches_tracked'):
            assert result.state_dict[key].item() == 0
        else:
            assert torch.equal(result.state_dict[key], value), key
    assert set(result.state_dict) == set(ours_state)


def test_module_prefix_is_removed(ours_state):
    wrapped = {'module.' + k: v for k, v in ours_state.items()}
    assert_same(convert_state_dict(wrapped), ours_state)
