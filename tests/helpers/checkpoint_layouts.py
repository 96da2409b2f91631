"""Checkpoints and layout descriptions shared by tests/test_checkpoint/.

The fixtures are imported by the test modules that use them (pytest finds a
fixture in the module's namespace). ``official_keys`` is written from the
official code (models/*.py of Atten4Vis/ConditionalDETR), independently of
the converter's rules.
"""
import argparse
import shutil
from collections import OrderedDict

import pytest
import torch
from mmengine.registry import DefaultScope

from builders import load_config

import mmdet_conddetr  # noqa: F401
from mmdet_conddetr.checkpoint import export_state_dict
from mmdet_conddetr.registry import MODELS

R50_BLOCKS = (3, 4, 6, 3)
FOREIGN = ('official', 'detrex', 'hf', 'mmdet')


def build_ours(name='r50_50ep.py', **overrides):
    cfg = load_config(name)
    cfg.merge_from_dict({f'model.{k}': v for k, v in overrides.items()})
    with DefaultScope.overwrite_default_scope('mmdet_conddetr'):
        return MODELS.build(cfg.model).eval()


def random_state(model, seed=0):
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


def assert_same(a, b):
    assert set(a) == set(b), sorted(set(a) ^ set(b))[:20]
    for key in a:
        assert a[key].shape == b[key].shape, key
        if a[key] is b[key]:  # renamed, not copied: equal by identity
            continue
        assert torch.equal(a[key], b[key]), key


@pytest.fixture(scope='module')
def ours_model():
    return build_ours()


@pytest.fixture(scope='module')
def ours_state(ours_model):
    return random_state(ours_model)


@pytest.fixture(autouse=True)
def remove_files(tmp_path):  # import it where checkpoints are written
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
