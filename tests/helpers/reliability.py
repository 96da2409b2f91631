"""Shared pieces of the fault and input tests (tests/test_engine/,
tests/test_datasets/test_robust_coco.py).

* :func:`make_shapes` / :func:`write_tiny_config`: a few 64 px shapes images
  and a config derived from ``configs/conditional_detr/shapes_demo.py`` whose
  model is tiny (ResNet-18 stem + one 8-channel stage, width 32, one encoder
  and one decoder layer), trained with an iteration-based loop, no
  validation, deterministic on the CPU: a training iteration takes tens of
  milliseconds.
* Fault-injection hooks, imported by training subprocesses through
  ``custom_imports=dict(imports=['helpers.reliability'])`` (:func:`tool_env`
  puts ``tests/`` on ``PYTHONPATH``, as pytest does for the tests).
* :func:`build_runner`: the same config as an in-process mmengine Runner.
"""
import os
import os.path as osp
import subprocess
import sys
import time
import uuid

from mmengine.dist import get_rank
from mmengine.fileio import LocalBackend
from mmengine.hooks import Hook

from mmdet_conddetr.registry import HOOKS

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOLS = osp.join(REPO_ROOT, 'tools')
DEMO_CONFIG = osp.join(REPO_ROOT, 'configs', 'conditional_detr',
                       'shapes_demo.py')
CLASSES = ('circle', 'square', 'triangle', 'star')


def make_shapes(root, num_train=8, num_val=2, img_size=64, seed=1) -> str:
    subprocess.run([
        sys.executable,
        osp.join(TOOLS, 'misc', 'make_shapes_dataset.py'), '--out',
        str(root), '--num-train',
        str(num_train), '--num-val',
        str(num_val), '--img-size',
        str(img_size), '--seed',
        str(seed), '--quiet'
    ],
                   check=True,
                   capture_output=True,
                   timeout=120)
    return str(root).rstrip('/') + '/'


_TEST_PART = '''
test_pipeline = [
    dict(type='mmdet_conddetr.RobustLoadImageFromFile'),
    dict(type='Resize', scale=(64, 64), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape',
                                          'img_shape', 'scale_factor'))
]
test_dataloader = dict(
    batch_size=2,
    dataset=dict(data_root={root!r}, pipeline=test_pipeline))
test_cfg = dict(type='TestLoop')
test_evaluator = dict(ann_file={root!r} + 'annotations/instances_val.json')
'''
_NO_TEST_PART = '''
test_dataloader = None
test_cfg = None
test_evaluator = None
'''


def tiny_config_text(data_root: str,
                     max_iters: int = 12,
                     interval: int = 4,
                     extra: str = '',
                     test: bool = False,
                     dataset: str = '') -> str:
    """The config text. ``extra`` is appended (a dict assigned there
    *replaces* the one above, it is not merged); ``dataset`` holds more
    keyword arguments of the training dataset, e.g. ``"ann_file='x.json'"``.
    """
    test_part = _TEST_PART.format(root=data_root) if test else _NO_TEST_PART
    return f'''
_base_ = {DEMO_CONFIG!r}
_layer = dict(embed_dims=32, num_heads=2, feedforward_dims=64, dropout=0.0)
model = dict(
    num_queries=8,
    backbone=dict(depth=18, num_stages=1, strides=(1, ), dilations=(1, ),
                  out_indices=(0, ), base_channels=8, stem_channels=8),
    neck=dict(in_channels=[8], out_channels=32),
    encoder=dict(num_layers=1, layer_cfg=_layer),
    decoder=dict(num_layers=1, layer_cfg=_layer),
    positional_encoding=dict(num_feats=16),
    bbox_head=dict(embed_dims=32))
train_pipeline = [
    dict(type='mmdet_conddetr.RobustLoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='Resize', scale=(64, 64), keep_ratio=True),
    dict(type='PackDetInputs')
]
train_dataloader = dict(
    batch_size=2,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    batch_sampler=None,
    dataset=dict(data_root={data_root!r}, pipeline=train_pipeline,
                 {dataset}))
val_dataloader = None
val_cfg = None
val_evaluator = None
{test_part}
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop',
                 max_iters={max_iters})
param_scheduler = []
default_hooks = dict(
    logger=dict(interval=1),
    checkpoint=dict(by_epoch=False, interval={interval}, max_keep_ckpts=-1,
                    save_best=None))
log_processor = dict(by_epoch=False, window_size=1)
randomness = dict(seed=0, deterministic=True)
{extra}
'''


def write_tiny_config(path, data_root: str, **kwargs) -> str:
    with open(path, 'w') as f:
        f.write(tiny_config_text(data_root, **kwargs))
    return str(path)


def tool_env(**extra) -> dict:
    env = dict(os.environ)
    env['PYTHON'] = sys.executable
    env['OMP_NUM_THREADS'] = '1'  # fast and stable on the shared 2 cores
    env['MKL_NUM_THREADS'] = '1'
    env['PYTHONUNBUFFERED'] = '1'
    # custom_imports=dict(imports=['helpers.reliability']) finds this file
    paths = [osp.join(REPO_ROOT, 'tests')] + [
        p for p in env.get('PYTHONPATH', '').split(os.pathsep) if p
    ]
    env['PYTHONPATH'] = os.pathsep.join(paths)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def train_cmd(config, work_dir, *extra):
    return [
        sys.executable,
        osp.join(TOOLS, 'train.py'),
        str(config), '--work-dir',
        str(work_dir), *map(str, extra)
    ]


def build_runner(config_path, work_dir, **overrides):
    """An in-process ``Runner.from_cfg`` for the config (train loop, no
    validation): the safety hooks come from the config, as for every entry
    point."""
    import mmdet_conddetr  # noqa: F401
    from mmengine.config import Config
    from mmengine.runner import Runner
    cfg = Config.fromfile(str(config_path))
    cfg.work_dir = str(work_dir)
    cfg.experiment_name = f'reliability_{uuid.uuid4().hex[:8]}'
    cfg.randomness = dict(seed=0)  # no global deterministic mode in pytest
    cfg.merge_from_dict(overrides)
    return Runner.from_cfg(cfg)


# --------------------------------------------------------- fault injection
@HOOKS.register_module(force=True)
class SlowCheckpointWriteHook(Hook):
    """Makes the write of the checkpoint file whose name contains ``match``
    slow: half the bytes are written (and synced), then the process sleeps
    ``seconds`` before writing the rest -- a window to kill it mid-save."""

    def __init__(self, match: str, seconds: float = 60.0):
        self.match = match
        self.seconds = seconds

    def before_train(self, runner) -> None:
        original = LocalBackend.put
        match, seconds = self.match, self.seconds

        def put(backend, obj, filepath):
            if match not in osp.basename(str(filepath)):
                return original(backend, obj, filepath)
            os.makedirs(osp.dirname(str(filepath)), exist_ok=True)
            with open(filepath, 'wb') as f:
                f.write(obj[:len(obj) // 2])
                f.flush()
                os.fsync(f.fileno())
                time.sleep(seconds)
                f.write(obj[len(obj) // 2:])

        LocalBackend.put = put


@HOOKS.register_module(force=True)
class SlowIterationHook(Hook):
    """Sleeps after every training iteration (room for a random kill)."""

    def __init__(self, seconds: float = 0.2):
        self.seconds = seconds

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        time.sleep(self.seconds)


@HOOKS.register_module(force=True)
class RankFaultHook(Hook):
    """Rank ``rank`` exits (``action='exit'``, like a crash or an OOM kill)
    or hangs (``action='hang'``) before iteration ``iteration``."""

    def __init__(self, rank: int = 1, iteration: int = 3,
                 action: str = 'exit'):
        self.rank = rank
        self.iteration = iteration
        self.action = action

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        if get_rank() != self.rank or runner.iter + 1 != self.iteration:
            return
        print(f'RankFaultHook: rank {self.rank} {self.action}s at iteration '
              f'{self.iteration}', flush=True)
        if self.action == 'exit':
            os._exit(3)
        time.sleep(3600)


@HOOKS.register_module(force=True)
class RankNonFiniteLossHook(Hook):
    """On rank ``rank`` only, ``term`` of the loss is NaN at (1-based)
    iteration ``iteration``: the other ranks' losses stay finite."""

    def __init__(self, rank: int = 1, iteration: int = 3,
                 term: str = 'loss_bbox'):
        self.rank = rank
        self.iteration = iteration
        self.term = term

    def before_train(self, runner) -> None:
        model = getattr(runner.model, 'module', runner.model)
        original = model.loss

        def loss(*args, **kwargs):
            losses = original(*args, **kwargs)
            if get_rank() == self.rank and runner.iter + 1 == self.iteration:
                print(f'RankNonFiniteLossHook: {self.term} is NaN on rank '
                      f'{self.rank} at iteration {self.iteration}', flush=True)
                losses[self.term] = losses[self.term] * float('nan')
            return losses

        model.loss = loss


def last_checkpoint(work_dir) -> str:
    """The checkpoint path a run's ``last_checkpoint`` file names."""
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        return f.read().strip()
