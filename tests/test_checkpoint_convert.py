"""Checkpoint conversion: every layout, on-the-fly loading, errors, CLI.

No downloads: the foreign checkpoints are made here, from models of those
layouts that can run on this machine (Hugging Face transformers' and
MMDetection's ConditionalDETR, compared output for output with ours) or, for
the layouts whose code cannot run here (official: torchvision; detrex:
detectron2), from key lists written from their source code independently of
the converter, plus round trips.
"""
import argparse
import datetime
import importlib.util
import os.path as osp
import re
import shutil
import subprocess
import sys
from collections import OrderedDict

import pytest
import torch
from mmengine.registry import DefaultScope

from builders import load_config, make_batch
from helpers.hf_reference import build_hf_model

import mmdet_conddetr  # noqa: F401
from mmdet_conddetr.checkpoint import (COCO_CATEGORY_IDS, COCO_UNUSED_IDS,
                                       PRIOR_BIAS, CheckpointFileError,
                                       KeyMismatchError, NumClassesError,
                                       UnknownLayoutError,
                                       UnsafeCheckpointError, convert,
                                       convert_state_dict, detect_source,
                                       export_state_dict, expand_coco_rows,
                                       load_foreign_checkpoint,
                                       read_checkpoint_file, save_checkpoint,
                                       select_coco_rows)
from mmdet_conddetr.checkpoint.keymap import KeyMap
from mmdet_conddetr.registry import MODELS

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONVERTER = osp.join(REPO, 'tools', 'model_converters',
                     'convert_checkpoint.py')
TOL = 1e-4
R50_BLOCKS = (3, 4, 6, 3)
FOREIGN = ('official', 'detrex', 'hf', 'mmdet')


# --------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------
def _build_ours(name='r50_50ep.py', **overrides):
    cfg = load_config(name)
    cfg.merge_from_dict({f'model.{k}': v for k, v in overrides.items()})
    with DefaultScope.overwrite_default_scope('mmdet_conddetr'):
        return MODELS.build(cfg.model).eval()


def _random_state(model, seed=0):
    """Every tensor of ``model`` replaced by distinct random values (BN
    variances positive, counters random integers)."""
    generator = torch.Generator().manual_seed(seed)
    state = OrderedDict()
    for key, value in model.state_dict().items():
        if not value.is_floating_point():
            state[key] = torch.randint(0, 1000, value.shape,
                                       generator=generator)
        elif key.endswith('running_var'):
            state[key] = torch.rand(value.shape, generator=generator) + 0.5
        else:
            state[key] = torch.randn(value.shape, generator=generator) * 0.05
    return state


def _assert_same(a, b):
    assert set(a) == set(b), sorted(set(a) ^ set(b))[:20]
    for key in a:
        assert a[key].shape == b[key].shape, key
        if a[key] is b[key]:  # renamed, not copied: equal by identity
            continue
        assert torch.equal(a[key], b[key]), key


def _perturb_(model, seed):
    """Give ``model`` weights under which a misplaced tensor changes the
    outputs: random BN statistics/affine, LayerNorm affine, biases, and
    Xavier-uniform linear weights (gain 3, so attention is not uniform).
    Convolution weights keep the library's random init."""
    generator = torch.Generator().manual_seed(seed)

    def uniform_(tensor, low, high):
        tensor.copy_(torch.rand(tensor.shape, generator=generator) *
                     (high - low) + low)

    def normal_(tensor, std, mean=0.0):
        tensor.copy_(torch.randn(tensor.shape, generator=generator) * std +
                     mean)

    with torch.no_grad():
        for module in model.modules():
            if hasattr(module, 'running_var') and module.running_var \
                    is not None:
                uniform_(module.weight, 0.5, 1.0)
                normal_(module.bias, 0.02)
                normal_(module.running_mean, 0.02)
                uniform_(module.running_var, 0.5, 1.5)
            elif isinstance(module, torch.nn.LayerNorm):
                normal_(module.weight, 0.1, mean=1.0)
                normal_(module.bias, 0.05)
            elif isinstance(module, torch.nn.Embedding):
                normal_(module.weight, 1.0)
            elif isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
                if isinstance(module, torch.nn.Linear):
                    bound = 3 * (6 / sum(module.weight.shape))**0.5
                    uniform_(module.weight, -bound, bound)
                if module.bias is not None:
                    normal_(module.bias, 0.02)
            elif isinstance(module, torch.nn.MultiheadAttention):
                bound = 3 * (6 / sum(module.in_proj_weight.shape))**0.5
                uniform_(module.in_proj_weight, -bound, bound)
                normal_(module.in_proj_bias, 0.02)
    return model


@pytest.fixture(scope='module')
def ours_model():
    return _build_ours()


@pytest.fixture(scope='module')
def ours_state(ours_model):
    return _random_state(ours_model)


@pytest.fixture(autouse=True)
def _remove_files(tmp_path):
    """Checkpoints here are ~175 MB: do not leave them in pytest's kept
    temporary directories."""
    yield
    shutil.rmtree(tmp_path, ignore_errors=True)


@pytest.fixture(scope='module')
def official_file(tmp_path_factory, ours_state):
    """A file as the official main.py writes it (argparse args included)."""
    folder = tmp_path_factory.mktemp('official')
    path = folder / 'checkpoint.pth'
    torch.save(
        {
            'model': export_state_dict(ours_state, to='official'),
            'optimizer': {
                'state': {},
                'param_groups': [{
                    'lr': 1e-4,
                    'params': [0, 1]
                }]
            },
            'lr_scheduler': {
                'step_size': 40,
                'gamma': 0.1,
                '_last_lr': [1e-5]
            },
            'epoch': 49,
            'args': argparse.Namespace(
                lr=1e-4, backbone='resnet50', dilation=False, epochs=50),
        }, path)
    yield str(path)
    shutil.rmtree(folder, ignore_errors=True)


# --------------------------------------------------------------------------
# independent descriptions of the foreign layouts (from their source code)
# --------------------------------------------------------------------------
def official_keys(blocks=R50_BLOCKS, enc=6, dec=6):
    """Parameter names of the official ConditionalDETR (models/*.py of
    Atten4Vis/ConditionalDETR): torchvision ResNet with FrozenBatchNorm2d
    (no num_batches_tracked) behind IntermediateLayerGetter, the decoder
    layers' separate projections, ca_qpos_proj in layer 0 only."""
    frozen = ('weight', 'bias', 'running_mean', 'running_var')
    wb = ('weight', 'bias')
    body = 'backbone.0.body'
    keys = [f'{body}.conv1.weight'] + [f'{body}.bn1.{p}' for p in frozen]
    for stage, count in enumerate(blocks, 1):
        for block in range(count):
            prefix = f'{body}.layer{stage}.{block}'
            for i in (1, 2, 3):
                keys.append(f'{prefix}.conv{i}.weight')
                keys += [f'{prefix}.bn{i}.{p}' for p in frozen]
            if block == 0:
                keys.append(f'{prefix}.downsample.0.weight')
                keys += [f'{prefix}.downsample.1.{p}' for p in frozen]
    modules = ['input_proj', 'class_embed'] + [
        f'bbox_embed.layers.{i}' for i in range(3)
    ]
    for index in range(enc):
        prefix = f'transformer.encoder.layers.{index}'
        keys += [f'{prefix}.self_attn.in_proj_weight',
                 f'{prefix}.self_attn.in_proj_bias']
        modules += [f'{prefix}.{m}' for m in ('self_attn.out_proj', 'linear1',
                                              'linear2', 'norm1', 'norm2')]
    for index in range(dec):
        prefix = f'transformer.decoder.layers.{index}'
        names = ['sa_qcontent_proj', 'sa_qpos_proj', 'sa_kcontent_proj',
                 'sa_kpos_proj', 'sa_v_proj', 'self_attn.out_proj',
                 'ca_qcontent_proj', 'ca_kcontent_proj', 'ca_kpos_proj',
                 'ca_v_proj', 'ca_qpos_sine_proj', 'cross_attn.out_proj',
                 'linear1', 'linear2', 'norm1', 'norm2', 'norm3']
        if index == 0:
            names.append('ca_qpos_proj')
        modules += [f'{prefix}.{n}' for n in names]
    modules += ['transformer.decoder.norm'] + [
        f'transformer.decoder.{mlp}.layers.{i}'
        for mlp in ('query_scale', 'ref_point_head') for i in (0, 1)
    ]
    keys += [f'{m}.{p}' for m in modules for p in wb]
    keys.append('query_embed.weight')
    return keys


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


# --------------------------------------------------------------------------
# COCO ids and the renaming engine
# --------------------------------------------------------------------------
def test_coco_category_ids():
    assert len(COCO_CATEGORY_IDS) == 80
    assert len(set(COCO_CATEGORY_IDS)) == 80
    assert set(range(1, 91)) - set(COCO_CATEGORY_IDS) == set(COCO_UNUSED_IDS)
    assert list(COCO_CATEGORY_IDS) == sorted(COCO_CATEGORY_IDS)
    weight = torch.randn(91, 4)
    picked = select_coco_rows(weight)
    # class 11 (stop sign) is category id 13, not row 11
    assert torch.equal(picked[11], weight[13])
    back = expand_coco_rows(picked, 0.0)
    assert torch.equal(back[list(COCO_CATEGORY_IDS)], picked)
    bias = expand_coco_rows(torch.zeros(80), PRIOR_BIAS)
    for unused in (0, ) + COCO_UNUSED_IDS:
        assert bias[unused].item() == pytest.approx(-4.59512, abs=1e-4)
        assert back[unused].abs().sum() == 0


def test_keymap_renames_both_ways_and_reports_leftovers():
    keymap = KeyMap([('a.{n}.conv{i}.{w}', 'b.{n}.c{i}.{w}'),
                     ('x.{bn}', 'y.{bn}')])
    result = keymap.convert({
        'a.3.conv2.weight': 1,
        'x.running_var': 2,
        'a.3.conv2.scale': 3
    })
    assert dict(result.state_dict) == {'b.3.c2.weight': 1, 'y.running_var': 2}
    assert result.unmatched == ['a.3.conv2.scale']
    assert keymap.inverse().rename('b.0.c1.bias') == 'a.0.conv1.bias'
    with pytest.raises(ValueError):
        KeyMap([('a.{n}', 'b')])


# --------------------------------------------------------------------------
# layouts: names, round trips, detection
# --------------------------------------------------------------------------
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
    _assert_same(official_1, official_2)
    _assert_same(ours_1, ours_2)
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
    _assert_same(export_state_dict(ours_state, to='detrex'), expected)
    assert detect_source(expected) == 'detrex'
    # detrex's DC5 configs use TorchvisionResNet: backbone.body.<tv names>
    torchvision_named = OrderedDict(
        (key.replace('backbone.0.body.', 'backbone.body.')
         if key.startswith('backbone.0.body.') else
         detrex_converter_rename(key), value)
        for key, value in official.items())
    from_tv = convert_state_dict(torchvision_named, source='detrex')
    _assert_same(from_tv, convert_state_dict(expected))


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
    _assert_same(convert_state_dict(wrapped), ours_state)


# --------------------------------------------------------------------------
# Hugging Face and MMDetection: outputs equal
# --------------------------------------------------------------------------
def _tensor_outputs(model, batch):
    with torch.no_grad():
        return model(batch['inputs'], batch['data_samples'], mode='tensor')


@pytest.fixture(scope='module')
def hf_model():
    return _perturb_(build_hf_model(depth=50), seed=1)


def test_hf_outputs_match(hf_model, ours_model, tmp_path):
    """transformers' model and ours give the same detections (eval, same
    normalised input, padded batch with pixel_mask)."""
    state = hf_model.state_dict()  # transformers 5 in-memory names
    result = convert(state)
    assert result.source == 'hf' and result.source_num_classes == 91
    ours_model.load_state_dict(result.state_dict, strict=True)
    batch = make_batch(ours_model, [(64, 96), (48, 80)], seed=3)
    logits, boxes = _tensor_outputs(ours_model, batch)
    inputs = batch['inputs']
    pixel_mask = torch.zeros(inputs.shape[0], *inputs.shape[-2:],
                             dtype=torch.long)
    for index, sample in enumerate(batch['data_samples']):
        height, width = sample.img_shape
        pixel_mask[index, :height, :width] = 1
    with torch.no_grad():
        out = hf_model(pixel_values=inputs, pixel_mask=pixel_mask)
    ids = list(COCO_CATEGORY_IDS)
    assert (logits[-1] - out.logits[..., ids]).abs().max() < TOL
    assert (boxes[-1] - out.pred_boxes).abs().max() < TOL
    assert logits[-1].std() > 0.1  # not a degenerate comparison

    # The files transformers writes (the hub spelling) convert the same.
    hf_model.save_pretrained(tmp_path)
    from_file = load_foreign_checkpoint(str(tmp_path / 'model.safetensors'))
    assert from_file.source == 'hf'
    _assert_same(from_file.state_dict, result.state_dict)

    # The published hub model has a timm ResNet: torchvision names under
    # model.backbone.conv_encoder.model. (mmdet's ResNet uses them too).
    from safetensors.torch import load_file
    hub = load_file(str(tmp_path / 'model.safetensors'))
    timm = OrderedDict(
        (k, v) for k, v in hub.items() if '.backbone.' not in k)
    for key, value in result.state_dict.items():
        if key.startswith('backbone.') and 'num_batches_tracked' not in key:
            timm['model.backbone.conv_encoder.model.' +
                 key[len('backbone.'):]] = value
    _assert_same(convert_state_dict(timm), result.state_dict)

    # Export to hf names: the hub key set (backbone spelled as timm's).
    exported = export_state_dict(result.state_dict, to='hf')
    assert sorted(exported) == sorted(timm)
    for key in exported:
        assert exported[key].shape == timm[key].shape, key


def _mmdet_model():
    from mmdet.registry import MODELS as MMDET_MODELS
    from mmengine.hub import get_config
    cfg = get_config(
        'mmdet::conditional_detr/conditional-detr_r50_8xb2-50e_coco.py')
    cfg.model.backbone.init_cfg = None
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MMDET_MODELS.build(cfg.model).eval()
    _perturb_(model, seed=2)
    return model


def test_mmdet_outputs_match(ours_model):
    mmdet_model = _mmdet_model()
    state = mmdet_model.state_dict()
    result = convert(state)
    assert result.source == 'mmdet' and not result.filled
    ours_model.load_state_dict(result.state_dict, strict=True)
    batch = make_batch(ours_model, [(64, 96), (48, 80)], seed=4)
    mine = _tensor_outputs(ours_model, batch)
    theirs = _tensor_outputs(mmdet_model, batch)
    for a, b in zip(mine, theirs):
        assert a.shape == b.shape
        assert (a - b).abs().max() < TOL
    # Export back: MMDetection's own model loads it strictly.
    mmdet_model.load_state_dict(
        export_state_dict(result.state_dict, to='mmdet'), strict=True)


# --------------------------------------------------------------------------
# on-the-fly conversion when loading
# --------------------------------------------------------------------------
def test_load_from_official_file_converts_on_the_fly(official_file,
                                                     ours_state):
    """mmengine's loader (load_from=, tools/test.py CONFIG CKPT) reads the
    official file (argparse Namespace inside) and the model converts it."""
    from mmengine.runner import load_checkpoint
    model = _build_ours()
    load_checkpoint(model, official_file, map_location='cpu', strict=True)
    loaded = model.state_dict()
    assert set(loaded) == set(ours_state)
    for key, value in ours_state.items():
        if not key.endswith('num_batches_tracked'):
            assert torch.equal(loaded[key], value), key


@pytest.mark.parametrize('layout', ('detrex', 'hf', 'mmdet'))
def test_load_state_dict_converts_on_the_fly(ours_model, ours_state, layout):
    foreign = export_state_dict(ours_state, to=layout)
    ours_model.load_state_dict(foreign, strict=True)
    assert torch.equal(ours_model.state_dict()['query_embedding.weight'],
                       ours_state['query_embedding.weight'])


def test_on_the_fly_refuses_partial_loads(ours_state):
    shallow = _build_ours(**{'decoder.num_layers': 3})
    foreign = export_state_dict(ours_state, to='official')
    with pytest.raises(KeyMismatchError) as info:
        shallow.load_state_dict(foreign, strict=False)
    assert 'transformer.decoder.layers.5.sa_v_proj.weight' in \
        info.value.unexpected


def test_on_the_fly_leaves_other_checkpoints_alone(ours_state):
    model = _build_ours()
    partial = {k: v for k, v in ours_state.items() if k.startswith('neck.')}
    result = model.load_state_dict(partial, strict=False)
    assert 'backbone.conv1.weight' in result.missing_keys
    assert torch.equal(model.state_dict()['neck.convs.0.conv.weight'],
                       partial['neck.convs.0.conv.weight'])


# --------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------
def test_truncated_file(official_file, tmp_path):
    data = open(official_file, 'rb').read()
    path = tmp_path / 'truncated.pth'
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(CheckpointFileError, match='truncated'):
        load_foreign_checkpoint(str(path))
    legacy = tmp_path / 'legacy.pth'
    torch.save({'model': {'x': torch.ones(1000)}}, legacy,
               _use_new_zipfile_serialization=False)
    legacy.write_bytes(legacy.read_bytes()[:300])
    with pytest.raises(CheckpointFileError, match='truncated or corrupt'):
        read_checkpoint_file(str(legacy))
    safetensors = tmp_path / 'model.safetensors'
    from safetensors.torch import save_file
    save_file({'x': torch.ones(1000)}, str(safetensors))
    safetensors.write_bytes(safetensors.read_bytes()[:200])
    with pytest.raises(CheckpointFileError, match='truncated'):
        read_checkpoint_file(str(safetensors))


@pytest.mark.parametrize('content, words', [
    (b'model:\n  type: ConditionalDETR\n', 'not a PyTorch checkpoint'),
    (b'<!DOCTYPE html><html><body>Sign in</body></html>', 'HTML'),
    (b'', 'empty'),
])
def test_not_a_checkpoint(tmp_path, content, words):
    path = tmp_path / 'model.pth'
    path.write_bytes(content)
    with pytest.raises(CheckpointFileError, match=words):
        load_foreign_checkpoint(str(path))


def test_missing_file():
    with pytest.raises(CheckpointFileError, match='not found'):
        load_foreign_checkpoint('/nonexistent/checkpoint.pth')


def test_file_without_state_dict(tmp_path):
    path = tmp_path / 'eval.pth'
    torch.save({'precision': [0.1, 0.2], 'epoch': 3}, path)
    with pytest.raises(CheckpointFileError, match='no state dict'):
        load_foreign_checkpoint(str(path))


def test_unsafe_file_needs_explicit_trust(tmp_path, ours_state):
    path = tmp_path / 'with_objects.pth'
    torch.save({'model': export_state_dict(ours_state, to='detrex'),
                'date': datetime.date(2022, 11, 1)}, path)
    with pytest.raises(UnsafeCheckpointError, match='--unsafe-load'):
        load_foreign_checkpoint(str(path))
    result = load_foreign_checkpoint(str(path), unsafe_load=True)
    assert result.source == 'detrex'


@pytest.mark.parametrize('keys, words', [
    ({'transformer.decoder.layers.0.multihead_attn.in_proj_weight': 1,
      'transformer.decoder.layers.0.linear1.weight': 1}, 'DETR'),
    ({'decoder.layers.0.cross_attn.attn.in_proj_weight': 1},
     "MMDetection's DETR"),
    ({'transformer.decoder.layers.0.cross_attn.sampling_offsets.weight': 1},
     'Deformable'),
    ({'decoder.ref_anchor_head.layers.0.weight': 1,
      'decoder.layers.0.cross_attn.qpos_sine_proj.weight': 1}, 'DAB-DETR'),
    ({'conv1.weight': 1, 'layer1.0.conv1.weight': 1, 'fc.weight': 1},
     'classification'),
    ({'encoder.blocks.0.attn.qkv.weight': 1}, 'no supported'),
])
def test_other_architectures_are_named(keys, words):
    state = {key: torch.zeros(1) for key in keys}
    with pytest.raises(UnknownLayoutError, match=words):
        convert_state_dict(state)
    assert detect_source(state, raise_error=False) is None


def test_wrong_num_classes(ours_state):
    official = export_state_dict(ours_state, to='official')
    with pytest.raises(NumClassesError) as info:
        convert_state_dict(official, num_classes=81)
    message = str(info.value)
    assert '81' in message and '91' in message and '80' in message
    with pytest.raises(NumClassesError, match='20 only'):
        convert_state_dict({**ours_state,
                            'bbox_head.fc_cls.weight': torch.zeros(20, 256),
                            'bbox_head.fc_cls.bias': torch.zeros(20)},
                           num_classes=80)
    # 91 keeps the category-id rows
    kept = convert_state_dict(official, num_classes=91)
    assert torch.equal(kept['bbox_head.fc_cls.weight'],
                       official['class_embed.weight'])


def test_key_mismatches_are_listed(ours_state):
    official = export_state_dict(ours_state, to='official')
    broken = OrderedDict(official)
    del broken['transformer.decoder.layers.2.ca_kpos_proj.bias']
    broken['transformer.decoder.layers.2.extra_proj.weight'] = torch.ones(1)
    with pytest.raises(KeyMismatchError) as info:
        convert_state_dict(broken)
    error = info.value
    assert error.missing == ['decoder.layers.2.cross_attn.kpos_proj.bias']
    assert error.unexpected == [
        'transformer.decoder.layers.2.extra_proj.weight'
    ]
    assert 'decoder.layers.2.cross_attn.kpos_proj.bias' in str(error)
    # a wrong explicit source consumes nothing
    with pytest.raises(KeyMismatchError, match='Unexpected keys'):
        convert_state_dict(official, source='detrex')
    # a model of another depth (target_keys) is a mismatch too
    shallow = _build_ours(**{'encoder.num_layers': 5})
    with pytest.raises(KeyMismatchError, match='encoder.layers.5'):
        convert_state_dict(official, target_keys=shallow.state_dict().keys())


# --------------------------------------------------------------------------
# command line tool and output files
# --------------------------------------------------------------------------
def _cli():
    spec = importlib.util.spec_from_file_location('convert_checkpoint',
                                                  CONVERTER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_official_to_ours_and_back(official_file, tmp_path, capsys):
    cli = _cli()
    out = tmp_path / 'r50_official.pth'
    config = osp.join(REPO, 'configs', 'conditional_detr', 'r50_50ep.py')
    assert cli.main([official_file, str(out), '--config', config]) == 0
    printed = capsys.readouterr().out
    assert 'source layout: official (auto-detected' in printed
    assert '91 -> 80' in printed and 'verified' in printed

    # A plain torch, without this package's allow-lists, reads it safely.
    code = ('import torch, sys; ck = torch.load(sys.argv[1], '
            'weights_only=True); m = ck["meta"]; '
            'print(m["source"], m["config"], m["date"][:4], '
            'len(ck["state_dict"]), m["dataset_meta"]["classes"][0])')
    run = subprocess.run([sys.executable, '-c', code, str(out)],
                         capture_output=True, text=True, check=True)
    source, config_name, year, count, first = run.stdout.split()
    assert (source, config_name, count, first) == (
        'official', 'conditional_detr/r50_50ep.py', '617', 'person')
    assert int(year) >= 2024

    # --to official: what the official main.py loads (strict, 91 rows).
    back = tmp_path / 'checkpoint_official.pth'
    assert cli.main([str(out), str(back), '--to', 'official']) == 0
    checkpoint = torch.load(back, weights_only=True)
    assert sorted(checkpoint['model']) == sorted(official_keys())
    _assert_same(checkpoint['model'],
                 torch.load(official_file, weights_only=True)['model'])


def test_cli_errors(official_file, tmp_path, capsys):
    cli = _cli()
    dst = tmp_path / 'x.pth'
    assert cli.main([official_file, str(dst), '--num-classes', '81']) == 2
    assert 'cannot convert the class head to 81 classes' in \
        capsys.readouterr().err
    text = tmp_path / 'notes.txt'
    text.write_text('hello')
    assert cli.main([str(text), str(dst)]) == 2
    assert 'not a PyTorch checkpoint' in capsys.readouterr().err
    assert not dst.exists()


def test_hf_safetensors_export(ours_state, tmp_path):
    exported = export_state_dict(ours_state, to='hf')
    path = str(tmp_path / 'model.safetensors')
    save_checkpoint(exported, path, meta={'source': 'mmdet_conddetr'},
                    layout='hf')
    result = load_foreign_checkpoint(path)
    assert result.source == 'hf'
    for key, value in ours_state.items():
        if not key.endswith('num_batches_tracked'):
            assert torch.equal(result.state_dict[key], value)
