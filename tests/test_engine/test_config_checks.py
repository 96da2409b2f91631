"""Bad configs and command lines get one clear error naming the problem and
the fix, before anything runs (:mod:`mmdet_conddetr.engine.config_checks`,
:mod:`mmdet_conddetr.engine.preflight`).

The tools run in-process with their real ``run_cli`` wrapper, so what is
asserted is what the user sees on stderr; the model is the tiny one of
tests/helpers/reliability.py.
"""
import os
import os.path as osp

import pytest
import torch
from helpers.reliability import (DEMO_CONFIG, REPO_ROOT, make_shapes,
                                 write_tiny_config)
from helpers.tool_run import tool_error
from mmengine.config import Config
from mmengine.registry import init_default_scope

from mmdet_conddetr.engine.config_checks import (check_num_classes,
                                                 check_registry_types,
                                                 explain_registry_key_error)
from mmdet_conddetr.engine.preflight import check_launch, safety_notes
from mmdet_conddetr.errors import ConfigCheckError


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    return make_shapes(tmp_path_factory.mktemp('shapes'), num_val=2)


@pytest.fixture(autouse=True)
def scope():
    init_default_scope('mmdet_conddetr')


# ------------------------------------------------------------------ config
def test_missing_config_file_suggests_nearest(capsys, monkeypatch, tmp_path):
    wrong = osp.join(REPO_ROOT, 'configs', 'conditional_detr',
                     'shapes_demo_typo.py')
    err = tool_error('train.py', [wrong, '--work-dir', tmp_path], capsys,
                     monkeypatch)
    assert f'config file not found: {wrong}' in err
    assert 'Did you mean' in err and 'shapes_demo.py' in err


def test_unknown_type_names_place_and_nearest(tmp_path, shapes, capsys,
                                              monkeypatch):
    config = write_tiny_config(
        tmp_path / 'cfg.py', shapes,
        extra="model = dict(bbox_head=dict(type='ConditionalDETRHed'))\n"
        "train_pipeline = [dict(type='LoadImageFromFle')]\n"
        "train_dataloader = dict(dataset=dict(pipeline=train_pipeline))\n")
    err = tool_error('train.py', [config, '--work-dir', tmp_path / 'wd'],
                     capsys, monkeypatch)
    assert "model.bbox_head.type='ConditionalDETRHed' (a model) is not a " \
           "registered type in the 'mmdet_conddetr' scope (set by _scope_). " \
           "Did you mean 'ConditionalDETRHead'" in err
    assert "train_dataloader.dataset.pipeline.0.type='LoadImageFromFle' " \
           "(a transform) is not a registered type. Did you mean " \
           "'LoadImageFromFile'" in err
    assert 'custom_imports' in err
    assert not osp.exists(tmp_path / 'wd' / 'last_checkpoint')


def test_unknown_type_while_building_gets_suggestions():
    # what mmengine raises from deep inside a build (not caught beforehand)
    error = KeyError('FocalLos is not in the mmdet_conddetr::model registry. '
                     'Please check whether the value of `FocalLos` is '
                     'correct or it was registered as expected.')
    message = explain_registry_key_error(error)
    assert "'FocalLos' is not a registered model type" in message
    assert "Did you mean 'FocalLoss'" in message


def test_type_in_another_scope_gets_the_scoped_name():
    cfg = Config.fromfile(DEMO_CONFIG)
    # mmdet's default_runtime gives this dict _scope_='mmdet'
    cfg.default_hooks.checkpoint.type = 'AtomicCheckpointHook'
    with pytest.raises(ConfigCheckError) as info:
        check_registry_types(cfg)
    assert "is not a registered type in the 'mmdet' scope (set by _scope_)" \
        in str(info.value)
    assert "write type='mmdet_conddetr.AtomicCheckpointHook'" in str(
        info.value)


def test_valid_configs_pass_the_type_check():
    for name in ('shapes_demo.py', 'shapes_demo_detr.py', 'r50_50ep.py',
                 'dc5_r101_108ep.py'):
        cfg = Config.fromfile(
            osp.join(REPO_ROOT, 'configs', 'conditional_detr', name))
        check_registry_types(cfg)
        check_num_classes(cfg)


def test_num_classes_differs_from_dataset(tmp_path, shapes, capsys,
                                          monkeypatch):
    config = write_tiny_config(tmp_path / 'cfg.py', shapes)
    err = tool_error('train.py', [
        config, '--work-dir', tmp_path / 'wd', '--cfg-options',
        'model.bbox_head.num_classes=80'
    ], capsys, monkeypatch)
    assert 'model.bbox_head.num_classes=80, but train_dataloader.dataset ' \
           'has 4 classes (circle, square, triangle, star)' in err
    assert '--cfg-options model.bbox_head.num_classes=4' in err


def test_mmdet_base_the_installed_mmdet_lacks(tmp_path, capsys, monkeypatch):
    config = tmp_path / 'cfg.py'
    config.write_text(
        "_base_ = 'mmdet::_base_/datasets/coco_detecton.py'\n")
    err = tool_error('train.py', [config, '--work-dir', tmp_path / 'wd'],
                     capsys, monkeypatch)
    assert 'inherits "mmdet::_base_/datasets/coco_detecton.py", which the ' \
           'installed mmdet 3.3.0 does not have' in err
    assert 'mmdet::_base_/datasets/coco_detection.py' in err  # nearest
    assert 'pip install "mmdet==3.3.0"' in err


def test_unwritable_work_dir_before_anything_runs(tmp_path, shapes, capsys,
                                                  monkeypatch):
    config = write_tiny_config(tmp_path / 'cfg.py', shapes)
    blocker = tmp_path / 'a_file'
    blocker.write_text('not a directory')
    work_dir = blocker / 'work'
    err = tool_error('train.py', [config, '--work-dir', work_dir], capsys,
                     monkeypatch)
    assert f'cannot write to the work directory {work_dir}' in err
    assert 'Pass a writable directory with --work-dir DIR' in err


def test_gpu_count_of_dist_train(monkeypatch):
    cfg = Config(dict(launcher='pytorch'))
    monkeypatch.setenv('LOCAL_WORLD_SIZE', '4')
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 2)
    with pytest.raises(ConfigCheckError) as info:
        check_launch(cfg)
    assert '4 processes were started on this node' in str(info.value)
    assert 'only 2 GPU(s) are visible' in str(info.value)
    assert 'tools/dist_train.sh CONFIG 2' in str(info.value)
    monkeypatch.setenv('LOCAL_WORLD_SIZE', '2')
    assert check_launch(cfg) == []
    # CPU-only: any count works (gloo), too many only gets a note
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    monkeypatch.setenv('LOCAL_WORLD_SIZE', str((os.cpu_count() or 1) + 1))
    assert 'share the cores' in check_launch(cfg)[0]

def test_configs_carry_the_safety_hooks_and_others_get_a_note():
    cfg = Config.fromfile(
        osp.join(REPO_ROOT, 'configs', 'conditional_detr', 'r50_50ep.py'))
    assert safety_notes(cfg, training=True) == []
    # as the official code, COCO images without annotations are negatives
    assert cfg.train_dataloader.dataset.filter_cfg.filter_empty_gt is False
    cfg.default_hooks.checkpoint.type = 'CheckpointHook'  # a user's config
    cfg.custom_hooks = []
    notes = safety_notes(cfg, training=True)
    assert len(notes) == 3
    assert any("dict(type='mmdet_conddetr.CheckpointMatchHook')" in n
               and 'custom_hooks' in n for n in notes)
    assert any('default_hooks.checkpoint' in n for n in notes)
    assert len(safety_notes(cfg, training=False)) == 1  # only the match


def test_demo_config_checks_pass_for_the_shapes_demo():
    # the real demo config must pass every check it can without data
    cfg = Config.fromfile(DEMO_CONFIG)
    check_registry_types(cfg)
    check_num_classes(cfg)

