"""Faults during training (issue 8): kill -9 at random points and during a
checkpoint write, a non-finite loss, a full disk, a dead distributed rank.

Training runs use a tiny Conditional DETR (tests/helpers/reliability.py) on a
few 64 px shapes images; subprocesses run tools/train.py with one thread.
"""
import errno
import glob
import os
import os.path as osp
import random
import signal
import socket
import subprocess
import time

import pytest
import torch
from helpers.reliability import (build_runner, make_shapes, tool_env,
                                 train_cmd, write_tiny_config)

from mmdet_conddetr.checkpoint import read_checkpoint_file
from mmdet_conddetr.engine import CheckpointSaveError, NonFiniteLossError

TIMEOUT = 300


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    return make_shapes(tmp_path_factory.mktemp('shapes'))


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _wait_for(predicate, proc, what, timeout=TIMEOUT):
    deadline = time.time() + timeout
    while not predicate():
        assert proc.poll() is None, f'the run ended before {what}'
        assert time.time() < deadline, f'timed out waiting for {what}'
        time.sleep(0.02)


def _kill(proc):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _popen(cmd, log_path, env=None):
    out = open(log_path, 'w')
    return subprocess.Popen(
        cmd,
        stdout=out,
        stderr=subprocess.STDOUT,
        env=env or tool_env(),
        start_new_session=True), out


def _read(path):
    with open(path) as f:
        return f.read()


def _last_checkpoint(work_dir):
    return _read(osp.join(work_dir, 'last_checkpoint')).strip()


def test_kill_during_save_and_at_random_then_resume_is_exact(shapes, tmp_path):
    """Reference run vs. a run killed while writing iter_8.pth, resumed,
    killed again at a random moment, resumed to the end: same weights and
    optimizer state, bit for bit (seeded, deterministic CPU run)."""
    faults = "custom_imports = dict(imports=['helpers.reliability'])\n"
    ref_cfg = write_tiny_config(tmp_path / 'ref.py', shapes)
    slow_save = write_tiny_config(
        tmp_path / 'slow_save.py', shapes, extra=faults +
        "custom_hooks = [dict(type='SlowCheckpointWriteHook', "
        "match='iter_8.pth', seconds=120)]\n")
    slow_iters = write_tiny_config(
        tmp_path / 'slow_iters.py', shapes, extra=faults +
        "custom_hooks = [dict(type='SlowIterationHook', seconds=0.25)]\n")
    ref_dir, run_dir = str(tmp_path / 'ref'), str(tmp_path / 'run')

    ref, ref_out = _popen(train_cmd(ref_cfg, ref_dir), tmp_path / 'ref.log')
    # 1. killed in the middle of writing iter_8.pth
    run, out = _popen(train_cmd(slow_save, run_dir), tmp_path / 'a.log')
    try:
        tmp_glob = osp.join(run_dir, '.iter_8.pth.tmp-*')
        _wait_for(
            lambda: any(osp.getsize(p) > 0 for p in glob.glob(tmp_glob)),
            run, 'the write of iter_8.pth')
        _kill(run)
    finally:
        _kill(run)
        out.close()
    assert run.returncode == -signal.SIGKILL
    partial = glob.glob(tmp_glob)
    assert len(partial) == 1
    assert not osp.exists(osp.join(run_dir, 'iter_8.pth'))
    latest = _last_checkpoint(run_dir)
    assert latest == osp.join(run_dir, 'iter_4.pth')
    assert read_checkpoint_file(latest)['meta']['iter'] == 4

    # 2. resumed, killed again at a random moment of iterations 5..12
    delay = random.Random().uniform(0.0, 1.5)
    run, out = _popen(
        train_cmd(slow_iters, run_dir, '--resume'), tmp_path / 'b.log')
    try:
        _wait_for(lambda: 'Iter(train)' in _read(tmp_path / 'b.log'), run,
                  'the first resumed iteration')
        time.sleep(delay)
        _kill(run)
    finally:
        _kill(run)
        out.close()
    log_b = _read(tmp_path / 'b.log')
    assert 'Removed incomplete checkpoint file(s)' in log_b, log_b[-3000:]
    assert not any(osp.exists(p) for p in partial)
    assert 'Iter(train) [ 4/12]' not in log_b  # continued after iteration 4
    # whatever the kill hit, last_checkpoint names a complete checkpoint
    latest = _last_checkpoint(run_dir)
    assert read_checkpoint_file(latest)['meta']['iter'] in (4, 8, 12)

    # 3. resumed to the end
    proc = subprocess.run(
        train_cmd(ref_cfg, run_dir, '--resume'),
        env=tool_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert ref.wait(timeout=TIMEOUT) == 0, _read(tmp_path / 'ref.log')[-3000:]
    ref_out.close()

    final = read_checkpoint_file(osp.join(run_dir, 'iter_12.pth'))
    expected = read_checkpoint_file(osp.join(ref_dir, 'iter_12.pth'))
    assert final['meta']['iter'] == 12
    assert final['state_dict'].keys() == expected['state_dict'].keys()
    for key, value in expected['state_dict'].items():
        assert torch.equal(final['state_dict'][key], value), (key, delay)
    for param_id, state in expected['optimizer']['state'].items():
        for name, value in state.items():
            assert torch.equal(final['optimizer']['state'][param_id][name],
                               value), (param_id, name, delay)


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
    log = _read(glob.glob(str(tmp_path / 'wd' / '*' / '*.log'))[0])
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


# --------------------------------------------------------------- disk full
def test_disk_full_while_saving_keeps_previous_checkpoint(
        shapes, tmp_path, one_thread, monkeypatch):
    from mmengine.fileio import LocalBackend
    config = write_tiny_config(tmp_path / 'cfg.py', shapes, max_iters=6,
                               interval=2)
    work_dir = str(tmp_path / 'wd')
    runner = build_runner(config, work_dir)
    original = LocalBackend.put

    def put(backend, obj, filepath):
        if 'iter_4.pth' not in osp.basename(filepath):
            return original(backend, obj, filepath)
        with open(filepath, 'wb') as f:  # half written, then the disk is full
            f.write(obj[:len(obj) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(LocalBackend, 'put', put)
    with pytest.raises(CheckpointSaveError) as info:
        runner.train()
    message = str(info.value)
    previous = osp.join(work_dir, 'iter_2.pth')
    assert f'could not save the checkpoint {osp.join(work_dir, "iter_4.pth")}'\
        in message
    assert '[Errno 28] No space left on device' in message
    assert f'the latest complete checkpoint is still {previous}' in message
    assert 'Free disk space' in message and '--resume' in message
    assert info.value.errno is None or info.value.errno == errno.ENOSPC
    assert _last_checkpoint(work_dir) == previous
    assert read_checkpoint_file(previous)['meta']['iter'] == 2
    assert not osp.exists(osp.join(work_dir, 'iter_4.pth'))
    assert not glob.glob(osp.join(work_dir, '.iter_4.pth.tmp-*'))


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
    procs = _launch_two_ranks(config, tmp_path)
    try:
        for proc, _ in procs:
            proc.wait(timeout=TIMEOUT)
    finally:
        for proc, out in procs:
            _kill(proc)
            out.close()
    logs = [_read(tmp_path / f'rank{rank}.log') for rank in (0, 1)]
    for proc, log in zip(procs, logs):
        assert proc[0].returncode == 0, log[-3000:]
    # rank 1 logs warnings to a file of its own only; rank 0 says why it
    # skipped a step whose own losses were finite
    assert 'loss_bbox is NaN on rank 1 at iteration 3' in logs[1]
    assert 'skipped iteration 3 (a loss on another rank was not finite' \
        in logs[0]
    assert logs[0].count('NonFiniteLossHook: skipped') == 1
    saved = read_checkpoint_file(_last_checkpoint(tmp_path / 'wd'))
    assert saved['meta']['iter'] == 5
    for key, value in saved['state_dict'].items():
        assert torch.isfinite(value.float()).all(), key


# --------------------------------------------------------------- dead rank
def _free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def _launch_two_ranks(config, tmp_path):
    """tools/train.py as ranks 0 and 1 of a gloo job: [(Popen, log file)],
    logs in ``tmp_path/rank{0,1}.log``, work dir ``tmp_path/wd``."""
    port = _free_port()
    procs = []
    for rank in (0, 1):
        env = tool_env(
            RANK=rank, LOCAL_RANK=rank, WORLD_SIZE=2, MASTER_ADDR='127.0.0.1',
            MASTER_PORT=port)
        procs.append(
            _popen(
                train_cmd(config, tmp_path / 'wd', '--launcher', 'pytorch'),
                tmp_path / f'rank{rank}.log', env))
    return procs


@pytest.mark.parametrize('action', ['exit', 'hang'])
def test_dead_or_stuck_rank_fails_fast_with_clear_error(
        shapes, tmp_path, action):
    config = write_tiny_config(
        tmp_path / 'cfg.py', shapes, max_iters=20, interval=100,
        extra="custom_imports = dict(imports=['helpers.reliability'])\n"
        f"custom_hooks = [dict(type='RankFaultHook', rank=1, iteration=3, "
        f"action='{action}')]\n"
        "env_cfg = dict(dist_cfg=dict(timeout=5))\n"
        # one decoder layer leaves the query-scale MLP unused
        'find_unused_parameters = True\n')
    procs = _launch_two_ranks(config, tmp_path)
    try:
        rank0 = procs[0][0]
        start = time.time()
        _wait_for(lambda: 'RankFaultHook' in _read(tmp_path / 'rank1.log'),
                  rank0, 'the fault of rank 1')
        rank0.wait(timeout=60)  # timeout 5 s + slack on a loaded machine
        elapsed = time.time() - start
    finally:
        for proc, out in procs:
            _kill(proc)
            out.close()
    log0 = _read(tmp_path / 'rank0.log')
    assert rank0.returncode == 1, log0[-3000:]
    assert 'error (rank 0): a collective operation of the distributed job ' \
           'failed' in log0, log0[-3000:]
    assert 'tools/dist_train.sh' in log0 and ' 2 --work-dir' in log0
    assert 'Another process of the job has most likely crashed' in log0
    assert 'Traceback' not in log0
    if action == 'exit':
        assert procs[1][0].returncode == 3
    assert elapsed < 60
