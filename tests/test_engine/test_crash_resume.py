"""Faults during training: kill -9 at random points and during a checkpoint
write, a full disk, a dead distributed rank -- and resuming afterwards.

Training runs use a tiny Conditional DETR (tests/helpers/reliability.py) on a
few 64 px shapes images; subprocesses run tools/train.py with one thread.
"""
import errno
import glob
import os
import os.path as osp
import random
import signal
import subprocess
import time

import pytest
import torch
from helpers.processes import (kill, launch_two_ranks, popen, read,
                               wait_for)
from helpers.reliability import (build_runner, last_checkpoint,
                                 make_shapes, tool_env, train_cmd,
                                 write_tiny_config)

from mmdet_conddetr.checkpoint import read_checkpoint_file
from mmdet_conddetr.errors import CheckpointSaveError

TIMEOUT = 300


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    return make_shapes(tmp_path_factory.mktemp('shapes'))


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

    ref, ref_out = popen(train_cmd(ref_cfg, ref_dir), tmp_path / 'ref.log')
    # 1. killed in the middle of writing iter_8.pth
    run, out = popen(train_cmd(slow_save, run_dir), tmp_path / 'a.log')
    try:
        tmp_glob = osp.join(run_dir, '.iter_8.pth.tmp-*')
        wait_for(
            lambda: any(osp.getsize(p) > 0 for p in glob.glob(tmp_glob)),
            run, 'the write of iter_8.pth')
        kill(run)
    finally:
        kill(run)
        out.close()
    assert run.returncode == -signal.SIGKILL
    partial = glob.glob(tmp_glob)
    assert len(partial) == 1
    assert not osp.exists(osp.join(run_dir, 'iter_8.pth'))
    latest = last_checkpoint(run_dir)
    assert latest == osp.join(run_dir, 'iter_4.pth')
    assert read_checkpoint_file(latest)['meta']['iter'] == 4

    # 2. resumed, killed again at a random moment of iterations 5..12
    delay = random.Random().uniform(0.0, 1.5)
    run, out = popen(
        train_cmd(slow_iters, run_dir, '--resume'), tmp_path / 'b.log')
    try:
        wait_for(lambda: 'Iter(train)' in read(tmp_path / 'b.log'), run,
                  'the first resumed iteration')
        time.sleep(delay)
        kill(run)
    finally:
        kill(run)
        out.close()
    log_b = read(tmp_path / 'b.log')
    assert 'Removed incomplete checkpoint file(s)' in log_b, log_b[-3000:]
    assert not any(osp.exists(p) for p in partial)
    assert 'Iter(train) [ 4/12]' not in log_b  # continued after iteration 4
    # whatever the kill hit, last_checkpoint names a complete checkpoint
    latest = last_checkpoint(run_dir)
    assert read_checkpoint_file(latest)['meta']['iter'] in (4, 8, 12)

    # 3. resumed to the end
    proc = subprocess.run(
        train_cmd(ref_cfg, run_dir, '--resume'),
        env=tool_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert ref.wait(timeout=TIMEOUT) == 0, read(tmp_path / 'ref.log')[-3000:]
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
    assert last_checkpoint(work_dir) == previous
    assert read_checkpoint_file(previous)['meta']['iter'] == 2
    assert not osp.exists(osp.join(work_dir, 'iter_4.pth'))
    assert not glob.glob(osp.join(work_dir, '.iter_4.pth.tmp-*'))


# --------------------------------------------------------------- dead rank


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
    procs = launch_two_ranks(config, tmp_path)
    try:
        rank0 = procs[0][0]
        start = time.time()
        wait_for(lambda: 'RankFaultHook' in read(tmp_path / 'rank1.log'),
                  rank0, 'the fault of rank 1')
        rank0.wait(timeout=60)  # timeout 5 s + slack on a loaded machine
        elapsed = time.time() - start
    finally:
        for proc, out in procs:
            kill(proc)
            out.close()
    log0 = read(tmp_path / 'rank0.log')
    assert rank0.returncode == 1, log0[-3000:]
    assert 'error (rank 0): a collective operation of the distributed job ' \
           'failed' in log0, log0[-3000:]
    assert 'tools/dist_train.sh' in log0 and ' 2 --work-dir' in log0
    assert 'Another process of the job has most likely crashed' in log0
    assert 'Traceback' not in log0
    if action == 'exit':
        assert procs[1][0].returncode == 3
    assert elapsed < 60
