"""MergedGroupsOptimWrapperConstructor: the groups mmengine's constructor
makes, merged by setting, with the same optimizer step."""
import copy

import pytest
import torch
from mmengine.optim import DefaultOptimWrapperConstructor

from mmdet_conddetr.engine.optim_constructor import (
    MergedGroupsOptimWrapperConstructor, merge_param_groups)
from builders import build_model, load_config

SMALL = dict(num_queries=5,
             encoder=dict(num_layers=1, layer_cfg=dict(feedforward_dims=32)),
             decoder=dict(num_layers=2, layer_cfg=dict(feedforward_dims=32)))


def test_merge_param_groups_keeps_order_and_settings():
    a, b, c, d = (torch.nn.Parameter(torch.zeros(1)) for _ in range(4))
    groups = [
        dict(params=[a], lr=1.0),
        dict(params=[b], lr=0.1, weight_decay=0.0),
        dict(params=[c], lr=1.0),
        dict(params=[d], lr=0.1, weight_decay=0.0),
    ]
    merged = merge_param_groups(groups)
    assert [g['lr'] for g in merged] == [1.0, 0.1]
    assert merged[0]['params'] == [a, c] and 'weight_decay' not in merged[0]
    assert merged[1]['params'] == [b, d] and merged[1]['weight_decay'] == 0.0


@pytest.fixture(scope='module')
def model():
    return build_model('r50_50ep.py', **SMALL)


def build_both(model):
    cfg = copy.deepcopy(load_config('r50_50ep.py').optim_wrapper)
    assert cfg.pop('constructor').endswith(
        'MergedGroupsOptimWrapperConstructor')
    paramwise = cfg.pop('paramwise_cfg')
    return [
        constructor(cfg, paramwise)(model) for constructor in (
            MergedGroupsOptimWrapperConstructor,
            DefaultOptimWrapperConstructor)
    ]


def settings_by_param(optim_wrapper):
    return {
        id(param): (group['lr'], group['weight_decay'])
        for group in optim_wrapper.optimizer.param_groups
        for param in group['params']
    }


def test_r50_config_gets_two_groups_with_the_official_lrs(model):
    merged, default = build_both(model)
    groups = merged.optimizer.param_groups
    # mmengine's: one group per tensor
    assert all(len(group['params']) == 1
               for group in default.optimizer.param_groups)
    assert [group['lr'] for group in groups] == [1e-5, 1e-4]
    assert settings_by_param(merged) == settings_by_param(default)
    backbone = {
        id(p)
        for p in model.backbone.parameters() if p.requires_grad
    }
    assert {id(p) for p in groups[0]['params']} == backbone


def test_the_step_is_the_same(model):
    states = []
    for index in range(2):
        torch.manual_seed(0)
        trained = copy.deepcopy(model)
        optim_wrapper = build_both(trained)[index]
        for _ in range(2):
            for param in trained.parameters():
                if param.requires_grad:
                    param.grad = torch.randn_like(param)
            optim_wrapper.step()
        states.append([p.detach().clone() for p in trained.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*states))
    assert not all(
        torch.equal(a, b) for a, b in zip(states[0], model.parameters()))
