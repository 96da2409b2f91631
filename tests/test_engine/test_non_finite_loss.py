"""A non-finite loss (or non-finite predictions the matcher sees) stops
training with a clear error before the weights are touched, or skips the
step (``action='skip'``) on every rank alike.

Training runs use a tiny Conditional DETR (tests/helpers/reliability.py) on a
few 64 px shapes images.
"""
import glob
import os.path as osp

import pytest
import torch
from helpers.processes import kill, launch_two_ranks, read
from helpers.reliability import (build_runner, last_checkpoint, make_shapes,
                                 write_tiny_config)

from mmdet_conddetr.checkpoint import read_checkpoint_file
from mmdet_conddetr.errors import NonFiniteLossError

TIMEOUT = 300


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    return make_shapes(tmp_path_factory.mktemp('shapes'))


# ---------------------------------------------------------- non-finite loss
def _inject_nan(runner, at_iteration, term='loss_bbox'):
    """Make ``term`` NaN at (1-based) iteration ``at_iteration``."""
    model = runner.model
    original = model.loss

    def loss(*args, **kwargs):
        losses = original(*args, **kwargs)
        if runner.iter + 1 == at_iteration:
            losses[term] = losses[term] * float('nan')
        return losses

    model.loss = loss


def test_non_finite_loss_stops_with_term_iteration_and_checkpoint(
        shapes, tmp_path, one_thread):
    config = write_tiny_config(tmp_path / 'cfg.py', shapes, max_iters=8,
                               interval=2)
    runner = build_runner(config, tmp_path / 'wd')
    _inject_nan(runner, at_iteration=5)
    with pytest.raises(NonFiniteLossError) as info:
        runner.train()
    message = str(info.value)
    assert 'iteration 5' in message
    assert 'loss_bbox=nan' in message
    latest = osp.join(str(tmp_path / 'wd'), 'iter_4.pth')
    assert f'Latest checkpoint: {latest}' in message
    assert '--resume' in message and "action='skip'" in message
    assert '.png' in message  # the images of the batch
    assert info.value.iteration == 5
    # the bad step was not taken: the weights are finite and unchanged since
    # the checkpoint of iteration 4 (the forward pass did update the BN
    # statistics; nothing is saved after the error)
    saved = read_checkpoint_file(latest)['state_dict']
    for key, value in runner.model.named_parameters():
        assert torch.isfinite(value).all(), key
        assert torch.equal(value, saved[key]), key


def test_non_finite_loss_skip_action(shapes, tmp_path, one_thread):
    config = write_tiny_config(
        tmp_path / 'cfg.py', shapes, max_iters=6, interval=100,
        extra="custom_hooks = [dict(type='NonFiniteLossHook', "
        "action='skip', max_consecutive_skips=2)]\n")
    runner = build_runner(config, tmp_path / 'wd')
    _inject_nan(runner, at_iteration=3, term='loss_cls')
    runner.train()
    hook = next(h for h in runner.hooks
                if type(h).__name__ == 'NonFiniteLossHook')
    assert hook.skipped_total == 1
    assert runner.iter == 6
    for key, value in runner.model.state_dict().items():
        assert torch.isfinite(value.float()).all(), key
    log = read(glob.glob(str(tmp_path / 'wd' / '*' / '*.log'))[0])
    assert 'skipped iteration 3 (non-finite loss: loss_cls=nan)' in log

    # every step non-finite: stops after max_consecutive_skips
    runner = build_runner(
        config, tmp_path / 'wd2',
        custom_hooks=[dict(type='NonFiniteLossHook', action='skip',
                           max_consecutive_skips=2)])
    original = runner.model.loss
    runner.model.loss = lambda *a, **k: {
        name: value * float('inf')
        for name, value in original(*a, **k).items()
    }
    with pytest.raises(NonFiniteLossError, match='3 steps in a row'):
        runner.train()


def test_non_finite_predictions_from_the_matcher(shapes, tmp_path,
                                                 one_thread):
    """NaN weights -> the assigner's FloatingPointError is reported with the
    iteration and resume hint too."""
    config = write_tiny_config(tmp_path / 'cfg.py', shapes, max_iters=4,
                               interval=100)
    runner = build_runner(config, tmp_path / 'wd')
    original = runner.model.extract_feat

    def extract_feat(inputs):
        feats = original(inputs)
        if runner.iter + 1 == 2:
            feats = tuple(f * float('nan') for f in feats)
        return feats

    runner.model.extract_feat = extract_feat
    with pytest.raises(NonFiniteLossError) as info:
        runner.train()
    assert 'iteration 2' in str(info.value)
    assert 'non-finite predictions' in str(info.value)
    assert isinstance(info.value.__cause__, FloatingPointError)


def test_skip_under_ddp_every_rank_skips_the_same_step(shapes, tmp_path):
    """Rank 1 alone gets a NaN loss at iteration 3: both ranks skip that
    step together (no hang in DDP's all-reduce) and train on."""
    config = write_tiny_config(
        tmp_path / 'cfg.py', shapes, max_iters=5, interval=100,
        extra="custom_imports = dict(imports=['helpers.reliability'])\n"
        "custom_hooks = [dict(type='NonFiniteLossHook', action='skip'), "
        "dict(type='RankNonFiniteLossHook', rank=1, iteration=3)]\n"
        "env_cfg = dict(dist_cfg=dict(timeout=60))\n"
        'find_unused_parameters = True\n')
    procs = launch_two_ranks(config, tmp_path)
    try:
        for proc, _ in procs:
            proc.wait(timeout=TIMEOUT)
    finally:
        for proc, out in procs:
            kill(proc)
            out.close()
    logs = [read(tmp_path / f'rank{rank}.log') for rank in (0, 1)]
    for proc, log in zip(procs, logs):
        assert proc[0].returncode == 0, log[-3000:]
    # rank 1 logs warnings to a file of its own only; rank 0 says why it
    # skipped a step whose own losses were finite
    assert 'loss_bbox is NaN on rank 1 at iteration 3' in logs[1]
    assert 'skipped iteration 3 (non-finite loss on rank 1: loss_bbox=nan)' \
        in logs[0]
    assert logs[0].count('NonFiniteLossHook: skipped') == 1
    saved = read_checkpoint_file(last_checkpoint(tmp_path / 'wd'))
    assert saved['meta']['iter'] == 5
    for key, value in saved['state_dict'].items():
        assert torch.isfinite(value.float()).all(), key
