"""A hostile environment gets one sentence, not a traceback, and nothing is
lost: no network or a silent proxy, settings torch/mmengine reject, devices
and launchers that are not there, folders that cannot be written or hold
another run. Each test runs a real tool (in-process with its ``run_cli``
wrapper, or as a subprocess where the fault is process-wide) and asserts the
exit status, the key facts of the message and what is on disk afterwards."""
import os
import socket
import subprocess
import sys
import threading

import pytest
import torch
from helpers.reliability import (TOOLS, make_shapes, tool_env, train_cmd,
                                 write_tiny_config)
from helpers.tool_run import tool_error


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    return make_shapes(tmp_path_factory.mktemp('shapes'), num_val=2)


@pytest.fixture
def config(tmp_path, shapes):
    return write_tiny_config(tmp_path / 'cfg.py', shapes, max_iters=2,
                             interval=2, test=True)


def _pretrained(tmp_path, shapes, url):
    extra = ("model = dict(backbone=dict(init_cfg=dict(_delete_=True, "
             f"type='Pretrained', checkpoint={url!r})))")
    return write_tiny_config(tmp_path / 'url.py', shapes, max_iters=2,
                             interval=2, extra=extra)


def _train_subprocess(config, work_dir, tmp_path, **env):
    env = tool_env(TORCH_HOME=str(tmp_path / 'torch_home'), **env)
    return subprocess.run(train_cmd(config, work_dir), env=env, text=True,
                          capture_output=True, timeout=300)


def _one_error(proc):
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert 'Traceback' not in proc.stderr, proc.stderr[-3000:]
    errors = [x for x in proc.stderr.splitlines() if x.startswith('error: ')]
    assert len(errors) == 1, proc.stderr[-3000:]
    return errors[0]


def _no_checkpoints(work_dir):
    return not any(name.endswith('.pth') or name == 'last_checkpoint'
                   for _, _, files in os.walk(work_dir) for name in files)


# ---------------------------------------------------------------- network
def test_no_internet_names_the_url_and_the_fixes(tmp_path, shapes):
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    url = f'http://127.0.0.1:{port}/resnet18-test.pth'
    config = _pretrained(tmp_path, shapes, url)
    proc = _train_subprocess(config, tmp_path / 'wd', tmp_path)
    message = _one_error(proc)
    assert f'cannot download {url} (model.backbone.init_cfg.checkpoint)' \
        in message
    assert 'Connection refused' in message
    cache = tmp_path / 'torch_home' / 'hub' / 'checkpoints' / \
        'resnet18-test.pth'
    assert f'copy it to {cache}' in message
    assert '--cfg-options model.backbone.init_cfg.checkpoint=/path/to/' \
        'resnet18-test.pth' in message
    assert '--cfg-options model.backbone.init_cfg=None' in message
    assert _no_checkpoints(tmp_path / 'wd')


def test_test_tool_with_a_checkpoint_url_it_cannot_reach(tmp_path, config):
    url = 'http://127.0.0.1:9/epoch_50.pth'  # port 9: nothing listens
    proc = subprocess.run(
        [sys.executable, os.path.join(TOOLS, 'test.py'), config, url,
         '--work-dir', str(tmp_path / 'wd')],
        env=tool_env(TORCH_HOME=str(tmp_path / 'torch_home')), text=True,
        capture_output=True, timeout=300)
    message = _one_error(proc)
    assert f'cannot download {url} (load_from)' in message
    assert 'pass /path/to/epoch_50.pth as the checkpoint argument' in message
    assert _no_checkpoints(tmp_path / 'wd')


def test_a_proxy_that_never_answers_times_out(tmp_path, shapes):
    server = socket.socket()
    server.bind(('127.0.0.1', 0))
    server.listen(8)
    held = []  # accepted and never answered
    threading.Thread(target=lambda: [held.append(server.accept())
                                     for _ in range(8)], daemon=True).start()
    proxy = f'http://127.0.0.1:{server.getsockname()[1]}'
    url = 'https://download.example.invalid/resnet18-test.pth'
    config = _pretrained(tmp_path, shapes, url)
    try:
        proc = _train_subprocess(
            config, tmp_path / 'wd', tmp_path, HTTPS_PROXY=proxy,
            MMDET_CONDDETR_DOWNLOAD_TIMEOUT=2)
    finally:
        server.close()
    message = _one_error(proc)
    assert f'cannot download {url}' in message
    assert f'through the proxy HTTPS_PROXY={proxy}' in message
    assert 'no answer within 2 s' in message
    assert _no_checkpoints(tmp_path / 'wd')


# ------------------------------------------------- settings people change
@pytest.mark.parametrize('options, facts', [
    (['train_dataloader.persistent_workers=True'],
     ['persistent_workers=True needs worker processes',
      'train_dataloader.num_workers=0']),
    (['train_dataloader.prefetch_factor=2'],
     ['prefetch_factor=2 needs worker processes',
      'train_dataloader.prefetch_factor=None']),
    (['train_dataloader.batch_size=0'],
     ['train_dataloader.batch_size=0: must be a positive integer']),
    (['train_dataloader.num_workers=-1'],
     ['train_dataloader.num_workers=-1: must be 0']),
    (['optim_wrapper=None'],
     ['train_dataloader, train_cfg set but optim_wrapper None',
      '--cfg-options train_dataloader=None train_cfg=None']),
    (['val_cfg.type=ValLoop'],
     ['--cfg-options cannot be applied', 'val_cfg']),
    (['optim_wrapper.type=AmpOptimWrapper'],
     ["optim_wrapper.type='AmpOptimWrapper' needs a GPU",
      'mmdet_conddetr.CPUAmpOptimWrapper']),
])
def test_rejected_settings(config, tmp_path, capsys, monkeypatch, options,
                           facts):
    if 'AmpOptimWrapper' in options[0] and torch.cuda.is_available():
        pytest.skip('AmpOptimWrapper works here')
    err = tool_error('train.py', [config, '--work-dir', tmp_path / 'wd',
                                  '--cfg-options', *options], capsys,
                     monkeypatch)
    for fact in facts:
        assert fact in err
    assert _no_checkpoints(tmp_path / 'wd')


@pytest.mark.parametrize('launcher, variables', [
    ('pytorch', 'RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT'),
    ('slurm', 'SLURM_PROCID, SLURM_NTASKS, SLURM_NODELIST'),
])
@pytest.mark.parametrize('script', ['train.py', 'test.py'])
def test_launcher_without_its_environment(config, tmp_path, capsys,
                                          monkeypatch, launcher, variables,
                                          script):
    for name in variables.split(', ') + ['MASTER_ADDR']:
        monkeypatch.delenv(name, raising=False)
    args = [config]
    if script == 'test.py':
        torch.save({'state_dict': {}}, str(tmp_path / 'model.pth'))
        args.append(tmp_path / 'model.pth')
    err = tool_error(script, args + ['--work-dir', tmp_path / 'wd',
                                     '--launcher', launcher], capsys,
                     monkeypatch)
    assert f'--launcher {launcher} needs the environment' in err
    assert variables in err and 'drop --launcher' in err


@pytest.mark.parametrize('script', [
    os.path.join('demo', 'image_demo.py'),
    os.path.join('analysis_tools', 'visualize_attention.py')
])
def test_cuda_asked_where_there_is_none(config, tmp_path, capsys,
                                        monkeypatch, script):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    image = tmp_path / 'image.png'
    image.write_bytes(b'')
    args = ([image, config, '--weights', 'x.pth'] if 'demo' in script else
            [config, 'x.pth', image])
    err = tool_error(script, args + ['--device', 'cuda:0'], capsys,
                     monkeypatch)
    assert '--device cuda:0 asks for a GPU but CUDA is not available' in err
    assert 'Run with --device cpu' in err
    assert sorted(os.listdir(tmp_path)) == ['cfg.py', 'image.png']


# ------------------------------------------------------- files and folders
def test_a_work_dir_holding_another_run_is_not_overwritten(
        config, tmp_path, capsys, monkeypatch):
    work_dir = tmp_path / 'wd'
    work_dir.mkdir()
    old = work_dir / 'iter_2.pth'
    old.write_bytes(b'the other run')
    (work_dir / 'last_checkpoint').write_text(str(old))
    err = tool_error('train.py', [config, '--work-dir', work_dir], capsys,
                     monkeypatch)
    assert f'the work directory {work_dir} holds another run' in err
    assert 'iter_2.pth' in err and '--resume' in err and '--work-dir' in err
    assert old.read_bytes() == b'the other run'
    assert sorted(os.listdir(work_dir)) == ['iter_2.pth', 'last_checkpoint']


def test_test_tool_output_file_that_cannot_be_written(
        config, tmp_path, capsys, monkeypatch):
    blocker = tmp_path / 'file'
    blocker.write_text('a file, not a folder')
    checkpoint = tmp_path / 'model.pth'
    torch.save({'state_dict': {}}, str(checkpoint))
    out = blocker / 'preds.pkl'
    err = tool_error('test.py', [config, checkpoint, '--work-dir',
                                 tmp_path / 'wd', '--out', out], capsys,
                     monkeypatch)
    assert f'--out {out}: cannot write to {blocker}' in err
    assert f'{blocker} is a file, not a folder' in err
    assert 'writable folder' in err
    assert not (tmp_path / 'wd').exists() or not os.listdir(tmp_path / 'wd')


def test_scripts_are_run_without_path_hacks():
    for script in ('train.py', 'test.py'):
        with open(os.path.join(TOOLS, script)) as f:
            assert 'sys.path' not in f.read()
    proc = subprocess.run([sys.executable, os.path.join(TOOLS, 'train.py'),
                           '--help'], capture_output=True, text=True,
                          cwd='/', timeout=120)
    assert proc.returncode == 0 and 'usage: train.py' in proc.stdout
