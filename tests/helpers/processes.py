"""Training subprocesses for the fault tests: start (alone or as two gloo
ranks), wait for, kill, read their logs."""
import os
import signal
import socket
import subprocess
import time

from .reliability import tool_env, train_cmd

TIMEOUT = 300


def wait_for(predicate, proc, what, timeout=TIMEOUT):
    deadline = time.time() + timeout
    while not predicate():
        assert proc.poll() is None, f'the run ended before {what}'
        assert time.time() < deadline, f'timed out waiting for {what}'
        time.sleep(0.02)


def kill(proc):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def popen(cmd, log_path, env=None):
    out = open(log_path, 'w')
    return subprocess.Popen(
        cmd,
        stdout=out,
        stderr=subprocess.STDOUT,
        env=env or tool_env(),
        start_new_session=True), out


def read(path):
    with open(path) as f:
        return f.read()


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def launch_two_ranks(config, tmp_path):
    """tools/train.py as ranks 0 and 1 of a gloo job: [(Popen, log file)],
    logs in ``tmp_path/rank{0,1}.log``, work dir ``tmp_path/wd``."""
    port = free_port()
    procs = []
    for rank in (0, 1):
        env = tool_env(
            RANK=rank, LOCAL_RANK=rank, WORLD_SIZE=2, MASTER_ADDR='127.0.0.1',
            MASTER_PORT=port)
        procs.append(
            popen(
                train_cmd(config, tmp_path / 'wd', '--launcher', 'pytorch'),
                tmp_path / f'rank{rank}.log', env))
    return procs
