"""Fine-tuning a COCO checkpoint on data of another number of classes.

A tiny model (Bottleneck ResNet, so it has the official layout's keys) with
80 classes is exported to the official layout (91 class rows) and used as
``load_from`` of a 4-class config on shapes images: at iteration 0 every
weight but the class head equals the checkpoint's, the head has 4 rows and
the prior bias, one log line says so, and the loss falls. Tested through
``Runner.from_cfg`` and through ``tools/train.py``; testing from the same
checkpoint stays strict. The detrex, HF, MMDetection and our own layouts go
through the same check (``match_checkpoint``) directly.
"""
import glob
import os.path as osp
import runpy
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.registry import DefaultScope
from mmengine.runner import Runner

import mmdet_conddetr  # noqa: F401
from helpers.reliability import DEMO_CONFIG, TOOLS, make_shapes
from mmdet_conddetr.checkpoint import (CLASS_BIAS, CLASS_WEIGHT, LAYOUTS,
                                       PRIOR_BIAS, convert, export_state_dict,
                                       save_checkpoint)
from mmdet_conddetr.engine.hooks import match_checkpoint
from mmdet_conddetr.errors import CheckpointMismatchError
from mmdet_conddetr.registry import MODELS

HEAD = (CLASS_WEIGHT, CLASS_BIAS)


def tiny_config(data_root: str, num_classes: int, max_iters: int) -> str:
    return f'''
_base_ = {DEMO_CONFIG!r}
_layer = dict(embed_dims=32, num_heads=2, feedforward_dims=64, dropout=0.0)
model = dict(
    num_queries=8,
    backbone=dict(depth=50, num_stages=4, strides=(1, 2, 2, 2),
                  dilations=(1, 1, 1, 1), out_indices=(3, ),
                  base_channels=4, stem_channels=4),
    neck=dict(in_channels=[128], out_channels=32),
    encoder=dict(num_layers=1, layer_cfg=_layer),
    decoder=dict(num_layers=2, layer_cfg=_layer),
    positional_encoding=dict(num_feats=16),
    bbox_head=dict(embed_dims=32, num_classes={num_classes}))
data_root = {data_root!r}
train_dataloader = dict(
    batch_size=4, batch_sampler=None,
    sampler=dict(type='InfiniteSampler', shuffle=False),
    dataset=dict(data_root=data_root, pipeline=[
        dict(type='mmdet_conddetr.RobustLoadImageFromFile'),
        dict(type='LoadAnnotations', with_bbox=True),
        dict(type='Resize', scale=(64, 64), keep_ratio=True),
        dict(type='PackDetInputs')]))
val_dataloader = None
val_cfg = None
val_evaluator = None
test_dataloader = dict(dataset=dict(data_root=data_root))
test_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop',
                 max_iters={max_iters})
optim_wrapper = dict(optimizer=dict(lr=5e-4, fused=False))
param_scheduler = []
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(by_epoch=False, interval=1000,
                                     save_best=None))
log_processor = dict(by_epoch=False, window_size=1)
'''


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp('finetune')
    data_root = make_shapes(root / 'shapes', num_train=4, num_val=2)
    coco_cfg = root / 'coco80.py'
    coco_cfg.write_text(tiny_config(data_root, 80, 1))
    cfg = Config.fromfile(str(coco_cfg))
    torch.manual_seed(3)
    with DefaultScope.overwrite_default_scope('mmdet_conddetr'):
        model = MODELS.build(cfg.model)
    model.init_weights()
    with torch.no_grad():  # no weight left at a value a fresh init gives
        for value in model.state_dict().values():
            if value.is_floating_point():
                value.add_(torch.randn_like(value) * 0.01)
    official = export_state_dict(model.state_dict(), to='official')
    assert official[CLASS_WEIGHT.replace('bbox_head.fc_cls',
                                         'class_embed')].shape[0] == 91
    path = str(root / 'coco_official.pth')
    save_checkpoint(official, path, layout='official')
    # What the file holds, in our names (91 rows kept).
    reference = convert(torch.load(path), 'official', None).state_dict
    fine_cfg = root / 'shapes4.py'
    fine_cfg.write_text(tiny_config(data_root, 4, 12))
    return dict(checkpoint=path, reference=reference, config=str(fine_cfg),
                root=root, native=model.state_dict())


class _Record(Hook):
    """The weights before the first iteration and every iteration's loss."""

    def __init__(self):
        self.first, self.losses = None, []

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter == 0:
            self.first = {k: v.detach().clone()
                          for k, v in runner.model.state_dict().items()}

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        self.losses.append(float(outputs['loss'].detach()))


def _log_text(work_dir) -> str:
    logs = glob.glob(osp.join(str(work_dir), '*', '*.log'))
    assert logs, f'no log under {work_dir}'
    return open(sorted(logs)[-1]).read()


def _assert_fine_tune_note(log: str):
    lines = [line for line in log.splitlines() if 'fine-tuning from' in line]
    assert len(lines) == 1, log
    for fact in (CLASS_WEIGHT, CLASS_BIAS, '91 class rows', '4 classes',
                 f'{PRIOR_BIAS:.3f}', 'official layout'):
        assert fact in lines[0], lines[0]
    assert 'size mismatch' not in log and 'missing keys' not in log


def test_load_from_coco_checkpoint_runner_from_cfg(setup, tmp_path):
    cfg = Config.fromfile(setup['config'])
    cfg.work_dir = str(tmp_path)
    cfg.load_from = setup['checkpoint']
    cfg.randomness = dict(seed=0)
    runner = Runner.from_cfg(cfg)
    record = _Record()
    runner.register_hook(record, 'LOWEST')
    runner.train()

    reference, first = setup['reference'], record.first
    assert set(first) == set(reference)
    for key, value in reference.items():
        if key not in HEAD:
            assert torch.equal(first[key], value), key
    assert first[CLASS_WEIGHT].shape == (4, 32)
    assert torch.equal(first[CLASS_BIAS], torch.full((4, ), PRIOR_BIAS))
    _assert_fine_tune_note(_log_text(tmp_path))
    losses = record.losses
    assert len(losses) == 12
    assert sum(losses[-3:]) < 0.9 * sum(losses[:3]), losses


def test_load_from_coco_checkpoint_train_tool(setup, tmp_path, monkeypatch):
    """tools/train.py (run in-process, as a user's command line) does the
    same: its preflight adds nothing that changes the load."""
    work_dir = tmp_path / 'wd'
    monkeypatch.setattr(sys, 'argv', [
        'train.py', setup['config'], '--work-dir',
        str(work_dir), '--cfg-options', f"load_from={setup['checkpoint']}",
        'train_cfg.max_iters=1'
    ])
    runpy.run_path(osp.join(TOOLS, 'train.py'), run_name='__main__')
    _assert_fine_tune_note(_log_text(work_dir))
    assert osp.exists(osp.join(str(work_dir), 'iter_1.pth'))


def test_testing_from_coco_checkpoint_stays_strict(setup, tmp_path):
    cfg = Config.fromfile(setup['config'])
    cfg.work_dir = str(tmp_path)
    cfg.load_from = setup['checkpoint']
    runner = Runner.from_cfg(cfg)
    with pytest.raises(CheckpointMismatchError) as info:
        runner.test()
    message = str(info.value)
    assert 'num_classes' in message and '4' in message


@pytest.mark.parametrize('layout', ('detrex', 'hf', 'mmdet', 'mmdet_conddetr'))
def test_every_layout_fine_tunes(setup, layout):
    """The hook's check on a COCO file of each other layout (80 or 91 rows)
    for a 4-class model: everything but the head is taken over, the head is
    fresh."""
    cfg = Config.fromfile(setup['config'])
    with DefaultScope.overwrite_default_scope('mmdet_conddetr'):
        model = MODELS.build(cfg.model)
    exported = export_state_dict(setup['native'], to=layout)
    container = LAYOUTS[layout].container
    checkpoint = {container: exported} if container else dict(exported)
    notes = match_checkpoint(checkpoint, model, strict=False, name='coco.pth')
    assert len(notes) == 1 and 'fine-tuning from coco.pth' in notes[0]
    rows = exported[next(k for k in exported if 'class' in k or 'fc_cls' in k)]
    assert f'{rows.shape[0]} class rows' in notes[0]
    loaded = checkpoint['state_dict']
    assert set(loaded) == set(model.state_dict())
    for key, value in setup['native'].items():
        if key not in HEAD:
            assert torch.equal(loaded[key], value), key
    assert loaded[CLASS_WEIGHT].shape == (4, 32)
    assert torch.equal(loaded[CLASS_BIAS], torch.full((4, ), PRIOR_BIAS))
    # testing or resuming (strict): refused, naming the class counts
    with pytest.raises(CheckpointMismatchError) as info:
        match_checkpoint({container or 'state_dict': exported}, model,
                         strict=True)
    message = str(info.value)
    assert '4 classes' in message or 'num_classes=4' in message, message
