"""Shared pieces of the end-to-end tool tests (tests/test_tools/): the demo
config(s) shrunk through ``--cfg-options`` (tiny data, small batches, a few
epochs of a few iterations), subprocess runs of the tools and readers of
their outputs. ``shapes_root`` and ``model_config`` are module-scoped
fixtures; import them into a test module to use them."""
import glob
import json
import os
import os.path as osp
import signal
import socket
import subprocess
import sys
import tempfile

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


def final_checkpoint_only(max_epochs):
    """Save the checkpoint of the last epoch only (and the best one): each
    save also formats the whole config with yapf (mmengine stores it in the
    checkpoint), a second or so, and no test reads the earlier ones."""
    return [f'default_hooks.checkpoint.interval={max_epochs}']


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
    # One compute thread per process: the tiny models gain nothing from
    # more, and runs overlap (Background) on the 2 cores without spinning
    # OpenMP threads slowing each other down.
    env['OMP_NUM_THREADS'] = '1'
    env['MKL_NUM_THREADS'] = '1'
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


class Background:
    """A tool run started now and waited for by ``result()``, which checks
    it as :func:`run` does. A tool run spends most of its time importing
    torch and mmdet on one core, so independent runs overlap well on two.
    Output goes to files (a full pipe would stall the run)."""

    def __init__(self, cmd, env=None, timeout=TIMEOUT):
        self.cmd = [str(c) for c in cmd]
        self.timeout = timeout
        self.logs = [tempfile.TemporaryFile('w+') for _ in range(2)]
        self.proc = subprocess.Popen(self.cmd,
                                     cwd=REPO_ROOT,
                                     env=env or tool_env(),
                                     stdout=self.logs[0],
                                     stderr=self.logs[1],
                                     text=True,
                                     start_new_session=True)

    def result(self) -> subprocess.CompletedProcess:
        try:
            self.proc.wait(timeout=self.timeout)
        finally:
            self.stop()
        for log in self.logs:
            log.seek(0)
        stdout, stderr = (log.read() for log in self.logs)
        for log in self.logs:
            log.close()
        assert self.proc.returncode == 0, (
            f'{" ".join(self.cmd)} failed ({self.proc.returncode}):\n'
            f'{stdout[-3000:]}\n{stderr[-6000:]}')
        return subprocess.CompletedProcess(self.cmd, 0, stdout, stderr)

    def stop(self):
        """Kill the run and its children (torchrun's) if still going."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def selected(request, name):
    """Whether this session runs the test function ``name`` (a run started
    early for it is wasted otherwise)."""
    return any(
        getattr(item, 'originalname', item.name) == name
        for item in request.session.items)


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
