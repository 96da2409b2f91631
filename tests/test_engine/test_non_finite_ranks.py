"""Two gloo ranks, non-finite predictions on rank 1 only, injected inside
the Hungarian assigner (issue 13): the assigner raises on rank 1 while rank
0's forward pass goes on, and NonFiniteLossHook must still bring both ranks
to the same decision -- stop together with the same message (``raise``) or
skip the same single step and train on (``skip``) -- instead of hanging or
skipping every later step."""
import re
import socket
import subprocess

import pytest
import torch
from helpers.reliability import (make_shapes, tool_env, train_cmd,
                                 write_tiny_config)

from mmdet_conddetr.checkpoint import read_checkpoint_file

TIMEOUT = 240  # a hang would last until the 60 s collective timeout and more


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    return make_shapes(tmp_path_factory.mktemp('shapes'))


def _free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def _run_two_ranks(shapes, tmp_path, action, max_iters):
    config = write_tiny_config(
        tmp_path / 'cfg.py', shapes, max_iters=max_iters, interval=2,
        extra="custom_imports = dict(imports=['helpers.non_finite_faults'])\n"
        f"custom_hooks = [dict(type='NonFiniteLossHook', action='{action}'),"
        " dict(type='RankNonFinitePredictionHook', rank=1, iteration=3)]\n"
        'env_cfg = dict(dist_cfg=dict(timeout=60))\n'
        # one decoder layer leaves the query-scale MLP unused
        'find_unused_parameters = True\n')
    port = _free_port()
    procs = []
    for rank in (0, 1):
        env = tool_env(RANK=rank, LOCAL_RANK=rank, WORLD_SIZE=2,
                       MASTER_ADDR='127.0.0.1', MASTER_PORT=port)
        log = open(tmp_path / f'rank{rank}.log', 'w')
        procs.append((subprocess.Popen(
            train_cmd(config, tmp_path / 'wd', '--launcher', 'pytorch'),
            stdout=log, stderr=subprocess.STDOUT, env=env,
            start_new_session=True), log))
    try:
        codes = [proc.wait(timeout=TIMEOUT) for proc, _ in procs]
    finally:
        for proc, log in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()
    logs = [(tmp_path / f'rank{rank}.log').read_text() for rank in (0, 1)]
    return codes, logs


def test_raise_stops_both_ranks_with_the_same_message(shapes, tmp_path):
    codes, logs = _run_two_ranks(shapes, tmp_path, 'raise', max_iters=6)
    assert 'NaN class logits on rank 1 at iteration 3' in logs[1]
    assert codes == [1, 1], logs[0][-3000:] + logs[1][-3000:]
    messages = []
    for rank, log in enumerate(logs):
        found = re.findall(rf'error \(rank {rank}\): (.*?)\n(?:\S+ - |\Z)',
                           log, re.S)
        assert found, log[-3000:]
        messages.append(found[-1])
    assert messages[0] == messages[1]
    message = messages[0]
    assert message.startswith(
        'training stopped at iteration 3: non-finite predictions on rank 1 '
        '(Hungarian matching got non-finite class logits at iteration 3')
    assert 'Images of the batch on rank 1: ' in message
    assert 'iter_2.pth' in message and '--resume' in message
    assert 'Traceback' not in logs[0] + logs[1]


def test_skip_skips_the_same_single_step_on_both_ranks(shapes, tmp_path):
    codes, logs = _run_two_ranks(shapes, tmp_path, 'skip', max_iters=5)
    assert codes == [0, 0], logs[0][-3000:] + logs[1][-3000:]
    warnings = [
        re.findall(r'NonFiniteLossHook: skipped (.*)', log) for log in logs
    ]
    # rank 1 logs to a file of its own; stdout shows rank 0's records only
    assert len(warnings[0]) == 1, logs[0][-3000:]
    assert warnings[0][0].startswith(
        'iteration 3 (non-finite predictions on rank 1 (Hungarian matching '
        'got non-finite class logits at iteration 3')
    assert '1 step(s) skipped so far' in warnings[0][0]
    for rank, log in enumerate(logs):
        assert (f'rank {rank} skipped 1 step(s), ended at iteration 5'
                in log), log[-3000:]
    saved = read_checkpoint_file(
        (tmp_path / 'wd' / 'last_checkpoint').read_text().strip())
    assert saved['meta']['iter'] == 5
    for key, value in saved['state_dict'].items():
        assert torch.isfinite(value.float()).all(), key
