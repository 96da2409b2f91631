"""The launch scripts (dist_*.sh, slurm_*.sh), resuming after a kill, AMP
and --auto-scale-lr on the CPU: tools/train.py end to end in subprocesses
on a tiny shapes dataset (see tests/helpers/tool_runs.py).
"""
import os
import os.path as osp
import signal
import subprocess
import sys
import time

import pytest
import torch
from helpers.tool_runs import (BATCH, ITERS_PER_EPOCH, REPO_ROOT, TIMEOUT,
                               TOOLS, Background, data_options, load_ckpt,
                               run, run_logs, scalars, selected, tool_env,
                               train_cmd, train_options)
from helpers.tool_runs import model_config, shapes_root  # noqa: F401
from helpers.tool_run import tool_error


@pytest.fixture(scope='module')
def amp_run(model_config, shapes_root, tmp_path_factory, request):
    """The --amp --auto-scale-lr training checked by
    test_amp_and_auto_scale_lr_on_cpu, started by test_resume_after_kill
    so that it trains while that test's runs do (each run mostly imports
    torch and mmdet on one core); None when the AMP test is not run."""
    if not selected(request, 'test_amp_and_auto_scale_lr_on_cpu'):
        yield None
        return
    work_dir = str(tmp_path_factory.mktemp('amp'))
    job = Background(
        train_cmd(model_config,
                  work_dir,
                  *data_options(shapes_root),
                  *train_options(1, 1),
                  extra=['--amp', '--auto-scale-lr']))
    yield dict(work_dir=work_dir, job=job)
    job.stop()


def test_dist_scripts_validate_gpus(model_config):
    for script, args in (('dist_train.sh', [model_config, 'two']),
                         ('dist_train.sh', [model_config, '0']),
                         ('dist_test.sh', [model_config, 'x.pth', '-1'])):
        proc = subprocess.run(['bash', osp.join(TOOLS, script), *args],
                              cwd=REPO_ROOT,
                              capture_output=True,
                              text=True,
                              timeout=60)
        assert proc.returncode == 2
        assert 'must be a positive integer' in proc.stderr


@pytest.mark.parametrize('script', [
    'dist_train.sh', 'dist_test.sh', 'slurm_train.sh', 'slurm_test.sh',
    'launch_common.sh'
])
def test_shell_scripts_parse(script):
    subprocess.run(['bash', '-n', osp.join(TOOLS, script)],
                   check=True,
                   timeout=60)


@pytest.mark.parametrize('script, args, expected', [
    ('slurm_train.sh', ['part', 'job', 'cfg.py', 'wd', '--amp'],
     ['train.py', 'cfg.py', '--work-dir=wd', '--launcher=slurm', '--amp']),
    ('slurm_test.sh', ['part', 'job', 'cfg.py', 'ck.pth', '--tta'],
     ['test.py', 'cfg.py', 'ck.pth', '--launcher=slurm', '--tta']),
])
def test_slurm_scripts_hand_the_tool_to_srun(tmp_path, script, args, expected):
    fake_srun = tmp_path / 'srun'
    fake_srun.write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    fake_srun.chmod(0o755)
    env = dict(os.environ,
               PATH=f'{tmp_path}{os.pathsep}{os.environ["PATH"]}',
               GPUS='4',
               SRUN_ARGS='--mem=10G --time=5')
    proc = subprocess.run(['bash', osp.join(TOOLS, script), *args],
                          env=env,
                          capture_output=True,
                          text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    argv = proc.stdout.split()
    assert argv[:3] == ['-p', 'part', '--job-name=job']
    assert '--ntasks=4' in argv and '--mem=10G' in argv
    tool = next(i for i, arg in enumerate(argv) if arg.endswith('.py'))
    assert osp.basename(argv[tool]) == expected[0]
    assert argv[tool + 1:] == expected[1:]


def test_resume_after_kill(model_config, shapes_root, tmp_path, amp_run):
    """SIGKILL a run after its first checkpoint, resume, check the state."""
    work_dir = str(tmp_path / 'resume')
    epochs = 3
    options = [
        *data_options(shapes_root), *train_options(epochs, 100),
        'default_hooks.checkpoint.max_keep_ckpts=-1'
    ]
    cmd = train_cmd(model_config, work_dir, *options)
    last = osp.join(work_dir, 'last_checkpoint')
    with open(tmp_path / 'first_run.out', 'w') as out:
        proc = subprocess.Popen(cmd,
                                cwd=REPO_ROOT,
                                env=tool_env(),
                                stdout=out,
                                stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            deadline = time.time() + TIMEOUT
            while not osp.exists(last) and proc.poll() is None:
                assert time.time() < deadline, 'no checkpoint written'
                time.sleep(0.02)
            still_running = proc.poll() is None
            os.killpg(proc.pid, signal.SIGKILL)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert still_running, 'the run finished before it could be killed'
    assert proc.returncode == -signal.SIGKILL
    with open(last) as f:
        resume_from = f.read().strip()
    saved_epoch = int(osp.basename(resume_from)[len('epoch_'):-len('.pth')])
    assert 1 <= saved_epoch < epochs
    assert not osp.exists(osp.join(work_dir, f'epoch_{epochs}.pth'))
    saved = load_ckpt(resume_from)
    assert saved['meta']['iter'] == saved_epoch * ITERS_PER_EPOCH

    run(train_cmd(model_config, work_dir, *options, extra=['--resume']))

    log = run_logs(work_dir)[-1]
    assert f'Auto resumed from the latest checkpoint {resume_from}' in log
    assert (f'resumed epoch: {saved_epoch}, '
            f'iter: {saved_epoch * ITERS_PER_EPOCH}') in log
    # the resumed run trains only the remaining epochs
    assert f'Epoch(train) [{saved_epoch}]' not in log
    assert f'Epoch(train) [{saved_epoch + 1}]' in log
    assert f'Epoch(train) [{epochs}]' in log
    records = scalars(work_dir)
    assert len(records) == (epochs - saved_epoch) * ITERS_PER_EPOCH

    final = load_ckpt(osp.join(work_dir, f'epoch_{epochs}.pth'))
    total_iters = epochs * ITERS_PER_EPOCH
    assert final['meta']['epoch'] == epochs
    assert final['meta']['iter'] == total_iters
    assert final['message_hub']['runtime_info']['iter'] == total_iters - 1
    # Adam's step counters continued from the saved optimizer state: had it
    # been re-initialised they would count only the resumed iterations.
    steps = {
        int(state['step'])
        for state in final['optimizer']['state'].values()
    }
    assert steps == {total_iters}
    saved_steps = {
        int(state['step'])
        for state in saved['optimizer']['state'].values()
    }
    assert saved_steps == {saved_epoch * ITERS_PER_EPOCH}


def test_amp_and_auto_scale_lr_on_cpu(amp_run):
    work_dir = amp_run['work_dir']
    amp_run['job'].result()
    log = run_logs(work_dir)[-1]
    if torch.cuda.is_available():
        assert 'AmpOptimWrapper' in log
    else:
        assert 'bfloat16 autocast' in log
        assert "type='mmdet_conddetr.CPUAmpOptimWrapper'" in log
    # 1 process x BATCH images against the config's base batch size
    assert f'LR is set based on batch size of 8 and the current batch ' \
           f'size is {BATCH}' in log
    assert osp.isfile(osp.join(work_dir, 'epoch_1.pth'))


def test_auto_scale_lr_needs_config_entry(model_config, tmp_path, capsys,
                                          monkeypatch):
    # in-process (the tool stops before any work, so a subprocess would only
    # add the import of torch and mmdet): one `error:` line, exit status 1
    config = tmp_path / 'no_auto_scale_lr.py'
    config.write_text(f'_base_ = {osp.join(REPO_ROOT, model_config)!r}\n'
                      'auto_scale_lr = dict(_delete_=True)\n')
    err = tool_error('train.py', [
        config, '--auto-scale-lr', '--work-dir', tmp_path / 'wd'
    ], capsys, monkeypatch)
    assert '--auto-scale-lr needs `auto_scale_lr' in err
    assert f'{config} has no `auto_scale_lr`' in err
    assert not (tmp_path / 'wd').exists()
