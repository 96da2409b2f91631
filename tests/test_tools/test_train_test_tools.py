"""End-to-end tests of tools/train.py, tools/test.py and the dist_*.sh
launchers on a tiny synthetic shapes dataset (CPU only).

Every test runs the real command-line tools in subprocesses, with the demo
config(s) listed in ``MODEL_CONFIGS`` shrunk through ``--cfg-options`` (tiny
data, small batches, a few epochs of a few iterations each).
"""
import glob
import json
import os
import os.path as osp
import pickle
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch

REPO_ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
TOOLS = osp.join(REPO_ROOT, 'tools')
MAKE_DATA = osp.join(TOOLS, 'misc', 'make_shapes_dataset.py')

# The demo configs the tools are exercised with. The tests only rely on the
# config using _base_/shapes_dataset.py; add the Conditional DETR demo
# ('configs/conditional_detr/shapes_demo.py') here to run them for it too.
MODEL_CONFIGS = ['configs/conditional_detr/shapes_demo_detr.py']

NUM_TRAIN, NUM_VAL, BATCH = 8, 5, 2
ITERS_PER_EPOCH = NUM_TRAIN // BATCH
TIMEOUT = 900


# ----------------------------------------------------------------- helpers


def data_options(root):
    """--cfg-options pointing every dataset/evaluator at ``root``."""
    root = root.rstrip('/') + '/'
    ann_val = root + 'annotations/instances_val.json'
    return [
        f'train_dataloader.dataset.data_root={root}',
        f'val_dataloader.dataset.data_root={root}',
        f'test_dataloader.dataset.data_root={root}',
        f'val_evaluator.ann_file={ann_val}',
        f'test_evaluator.ann_file={ann_val}',
        f'train_dataloader.batch_size={BATCH}',
        f'val_dataloader.batch_size={BATCH}',
        f'test_dataloader.batch_size={BATCH}',
    ]


def train_options(max_epochs, val_interval):
    return [
        f'train_cfg.max_epochs={max_epochs}',
        f'train_cfg.val_interval={val_interval}',
        'default_hooks.logger.interval=1',
        'log_processor.window_size=1',
        'randomness.seed=0',
    ]


def same_batches_options(config):
    """Options making every epoch see the same batches in the same order
    (no shuffling, no flipping) at the full learning rate (no warm-up), so
    that the loss of a batch can be compared across epochs."""
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(REPO_ROOT, config))
    pipeline = cfg.train_dataloader.dataset.pipeline
    flips = [i for i, t in enumerate(pipeline) if t['type'] == 'RandomFlip']
    options = ['train_dataloader.sampler.shuffle=False']
    options += [f'train_dataloader.dataset.pipeline.{i}.prob=0.0'
                for i in flips]
    warmups = [
        i for i, s in enumerate(cfg.param_scheduler)
        if s['type'] == 'LinearLR'
    ]
    options += [f'param_scheduler.{i}.start_factor=1.0' for i in warmups]
    return options


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def tool_env(**extra):
    env = dict(os.environ)
    # the dist_*.sh scripts run $PYTHON; use this interpreter (the venv)
    env['PYTHON'] = sys.executable
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run(cmd, env=None, timeout=TIMEOUT):
    proc = subprocess.run(
        [str(c) for c in cmd],
        cwd=REPO_ROOT,
        env=env or tool_env(),
        capture_output=True,
        text=True,
        timeout=timeout)
    assert proc.returncode == 0, (
        f'{" ".join(map(str, cmd))} failed ({proc.returncode}):\n'
        f'{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}')
    return proc


def train_cmd(config, work_dir, *options, extra=()):
    return [
        sys.executable,
        osp.join(TOOLS, 'train.py'), config, '--work-dir', work_dir, *extra,
        '--cfg-options', *options
    ]


def eval_cmd(config, ckpt, work_dir, *options, extra=()):
    return [
        sys.executable,
        osp.join(TOOLS, 'test.py'), config, ckpt, '--work-dir', work_dir,
        *extra, '--cfg-options', *options
    ]


def run_logs(work_dir):
    """Text of every run log below ``work_dir`` (oldest run first)."""
    logs = sorted(glob.glob(osp.join(work_dir, '*', '*.log')))
    assert logs, f'no log written in {work_dir}'
    texts = []
    for path in logs:
        with open(path) as f:
            texts.append(f.read())
    return texts


def scalars(work_dir):
    """Training records of the latest run's vis_data/scalars.json."""
    paths = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data',
                                      'scalars.json')))
    assert paths, f'no scalars.json in {work_dir}'
    with open(paths[-1]) as f:
        records = [json.loads(line) for line in f if line.strip()]
    return [r for r in records if 'loss' in r]


def eval_metrics(work_dir):
    """The metrics dict tools/test.py wrote to WORK_DIR/<time>/<time>.json."""
    paths = [
        p for p in glob.glob(osp.join(work_dir, '*', '*.json'))
        if osp.basename(p)[:-5] == osp.basename(osp.dirname(p))
    ]
    assert len(paths) == 1, paths
    with open(paths[0]) as f:
        return json.load(f)


def load_ckpt(path):
    # import the package first: it allow-lists mmengine's checkpoint types
    # for torch.load(weights_only=True)
    import mmdet_conddetr  # noqa: F401
    return torch.load(path, map_location='cpu')


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope='module')
def shapes_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('shapes_tiny')
    run([
        sys.executable, MAKE_DATA, '--out', root, '--seed', 1, '--num-train',
        NUM_TRAIN, '--num-val', NUM_VAL, '--quiet'
    ])
    return str(root)


@pytest.fixture(scope='module', params=MODEL_CONFIGS)
def model_config(request):
    return request.param


@pytest.fixture(scope='module')
def trained(model_config, shapes_root, tmp_path_factory):
    """One short single-process training run: (work_dir, checkpoint)."""
    work_dir = str(tmp_path_factory.mktemp('train'))
    epochs = 8
    proc = run(
        train_cmd(model_config, work_dir, *data_options(shapes_root),
                  *train_options(epochs, epochs),
                  *same_batches_options(model_config)))
    ckpt = osp.join(work_dir, f'epoch_{epochs}.pth')
    return dict(
        work_dir=work_dir, ckpt=ckpt, epochs=epochs, stdout=proc.stdout)


@pytest.fixture(scope='module')
def single_test_metrics(model_config, shapes_root, trained,
                        tmp_path_factory):
    work_dir = str(tmp_path_factory.mktemp('test_single'))
    out = osp.join(work_dir, 'results.pkl')
    run(
        eval_cmd(
            model_config,
            trained['ckpt'],
            work_dir,
            *data_options(shapes_root),
            extra=['--out', out, '--show-dir', 'painted']))
    return dict(metrics=eval_metrics(work_dir), out=out, work_dir=work_dir)


# ------------------------------------------------------------------- tests


def test_train_writes_checkpoint_and_log(trained):
    work_dir = trained['work_dir']
    assert osp.isfile(trained['ckpt'])
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        assert f.read().strip() == trained['ckpt']
    log = run_logs(work_dir)[-1]
    assert 'Epoch(train)' in log
    assert f'Saving checkpoint at {trained["epochs"]} epochs' in log
    assert 'coco/bbox_mAP' in log  # validation ran at the end
    # the config is dumped next to the checkpoints
    assert glob.glob(osp.join(work_dir, '*.py'))

    ckpt = load_ckpt(trained['ckpt'])
    assert ckpt['meta']['epoch'] == trained['epochs']
    assert ckpt['meta']['iter'] == trained['epochs'] * ITERS_PER_EPOCH
    assert ckpt['meta']['dataset_meta']['classes'] == (
        'circle', 'square', 'triangle', 'star')
    assert any(k.startswith('backbone.') for k in ckpt['state_dict'])


def test_train_loss_decreases(trained):
    records = scalars(trained['work_dir'])
    losses = [r['loss'] for r in records]
    assert len(losses) == trained['epochs'] * ITERS_PER_EPOCH
    assert all(v == v and abs(v) < 1e4 for v in losses)  # finite
    # Every epoch sees the same batches: compare batch by batch.
    first = losses[:ITERS_PER_EPOCH]
    last = losses[-ITERS_PER_EPOCH:]
    assert all(b < a for a, b in zip(first, last)), (first, last)
    assert sum(last) < 0.85 * sum(first), losses


def test_test_tool_reports_coco_metrics(single_test_metrics):
    metrics = single_test_metrics['metrics']
    for key in ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/bbox_mAP_75'):
        assert key in metrics
        assert -1.0 <= metrics[key] <= 1.0
    with open(single_test_metrics['out'], 'rb') as f:
        results = pickle.load(f)
    assert len(results) == NUM_VAL
    assert {r['img_id'] for r in results} == set(range(1, NUM_VAL + 1))
    assert 'bboxes' in results[0]['pred_instances']
    # --show-dir paints every val image under WORK_DIR/<time>/painted/
    painted = glob.glob(
        osp.join(single_test_metrics['work_dir'], '*', 'painted', '*.png'))
    assert len(painted) == NUM_VAL


def test_test_tool_rejects_missing_checkpoint(model_config, tmp_path):
    proc = subprocess.run([
        sys.executable,
        osp.join(TOOLS, 'test.py'), model_config,
        str(tmp_path / 'nope.pth'), '--work-dir',
        str(tmp_path)
    ],
                          cwd=REPO_ROOT,
                          capture_output=True,
                          text=True,
                          timeout=TIMEOUT)
    assert proc.returncode != 0
    assert 'checkpoint not found' in proc.stderr


def test_dist_train_on_cpu_uses_gloo(model_config, shapes_root, tmp_path):
    work_dir = str(tmp_path / 'dist_train')
    proc = run([
        'bash',
        osp.join(TOOLS, 'dist_train.sh'), model_config, 2, '--work-dir',
        work_dir, '--cfg-options', *data_options(shapes_root),
        *train_options(2, 2)
    ],
               env=tool_env(PORT=free_port()))
    log = run_logs(work_dir)[-1]
    assert "'gloo'" in log
    assert 'rank 0 of 2' in log
    assert 'Distributed training: True' in log
    # each process sees half the data per epoch
    per_rank = ITERS_PER_EPOCH // 2
    assert f'Epoch(train) [2][{per_rank}/{per_rank}]' in log
    ckpt = load_ckpt(osp.join(work_dir, 'epoch_2.pth'))
    assert ckpt['meta']['iter'] == 2 * per_rank
    assert 'coco/bbox_mAP' in log
    assert proc.returncode == 0


def test_dist_test_matches_single_process(model_config, shapes_root, trained,
                                          single_test_metrics, tmp_path):
    work_dir = str(tmp_path / 'dist_test')
    run([
        'bash',
        osp.join(TOOLS, 'dist_test.sh'), model_config, trained['ckpt'], 2,
        '--work-dir', work_dir, '--cfg-options', *data_options(shapes_root)
    ],
        env=tool_env(PORT=free_port()))
    dist_metrics = eval_metrics(work_dir)
    single = single_test_metrics['metrics']
    coco_keys = sorted(k for k in single if k.startswith('coco/'))
    assert coco_keys and coco_keys == sorted(
        k for k in dist_metrics if k.startswith('coco/'))
    assert {k: dist_metrics[k] for k in coco_keys} == \
        {k: single[k] for k in coco_keys}
    assert "'gloo'" in run_logs(work_dir)[-1]


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


@pytest.mark.parametrize(
    'script', ['dist_train.sh', 'dist_test.sh', 'slurm_train.sh',
               'slurm_test.sh', 'launch_common.sh'])
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
def test_slurm_scripts_hand_the_tool_to_srun(tmp_path, script, args,
                                             expected):
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


def test_resume_after_kill(model_config, shapes_root, tmp_path):
    """SIGKILL a run after its first checkpoint, resume, check the state."""
    work_dir = str(tmp_path / 'resume')
    epochs = 5
    options = [
        *data_options(shapes_root), *train_options(epochs, 100),
        'default_hooks.checkpoint.max_keep_ckpts=-1'
    ]
    cmd = train_cmd(model_config, work_dir, *options)
    last = osp.join(work_dir, 'last_checkpoint')
    with open(tmp_path / 'first_run.out', 'w') as out:
        proc = subprocess.Popen(
            cmd,
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


def test_amp_and_auto_scale_lr_on_cpu(model_config, shapes_root, tmp_path):
    work_dir = str(tmp_path / 'amp')
    run(
        train_cmd(
            model_config,
            work_dir,
            *data_options(shapes_root),
            *train_options(1, 1),
            extra=['--amp', '--auto-scale-lr']))
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


def test_auto_scale_lr_needs_config_entry(model_config, tmp_path):
    config = tmp_path / 'no_auto_scale_lr.py'
    config.write_text(f'_base_ = {osp.join(REPO_ROOT, model_config)!r}\n'
                      'auto_scale_lr = dict(_delete_=True)\n')
    proc = subprocess.run([
        sys.executable,
        osp.join(TOOLS, 'train.py'),
        str(config), '--auto-scale-lr', '--work-dir',
        str(tmp_path / 'wd')
    ],
                          cwd=REPO_ROOT,
                          capture_output=True,
                          text=True,
                          timeout=TIMEOUT)
    assert proc.returncode != 0
    assert '--auto-scale-lr needs `auto_scale_lr' in proc.stderr
