"""Checks ``tools/train.py`` / ``tools/test.py`` apply to the final config
before the runner is built; they change nothing in it.

Everything that changes what a run does (robust dataset and image loading,
atomic checkpoints, the non-finite-loss stop, the checkpoint match check)
lives in the configs' ``_base_`` files, so ``Runner.from_cfg``, ``mim
train``, mmdet's own tools and ours build the same run. The tools only check
first, so that a mistake is reported in one message with its fix before
minutes of loading (each returns notes to log):

* the launch: a ``--launcher`` without its environment, more processes per
  node than GPUs, AMP asked where no GPU is;
* the work directory is writable and holds no other run (unless resuming);
* every ``type`` is registered (nearest names suggested), ``num_classes``
  matches the datasets, the dataloader settings are ones torch accepts, the
  train/val/test trios are complete and the data files exist (see
  :mod:`.config_checks`);
* the checkpoint to test, to ``load_from`` or to resume from is read once
  with :func:`mmdet_conddetr.checkpoint.read_checkpoint_file`, whose errors
  name the problem; ``--resume`` without a path checks ``last_checkpoint``;
* files the config downloads are remembered, so a failed download is
  reported with its URL and the fix (:mod:`.network`), and downloads time
  out instead of hanging;
* a config without this package's safety hooks gets a note saying how to
  add them.
"""
import glob
import os
import os.path as osp
from typing import List, Optional, Tuple

import torch
from mmengine.config import Config

from mmdet_conddetr.checkpoint import read_checkpoint_file
from mmdet_conddetr.errors import CheckpointFileError, ConfigCheckError
from .cli import set_cli_context
from .config_checks import (check_data_paths, check_num_classes,
                            check_registry_types, check_work_dir)
from .config_checks.runtime import (check_amp_device, check_dataloaders,
                                    check_launcher_env, check_loop_trios,
                                    check_new_run_dir)
from .network import config_urls, set_download_timeout

__all__ = ['prepare_train', 'prepare_test', 'check_launch', 'safety_notes']

# Config keys the runner builds in every run (helper variables such as
# ``train_pipeline`` are checked where they are used).
_RUNNER_KEYS = ('model', 'default_hooks', 'custom_hooks', 'visualizer',
                'log_processor', 'model_wrapper_cfg')


def _type_name(hook_cfg) -> Optional[str]:
    hook_type = hook_cfg.get('type') if isinstance(hook_cfg, dict) else None
    if isinstance(hook_type, type):
        return hook_type.__name__
    return hook_type.split('.')[-1] if isinstance(hook_type, str) else None


def safety_notes(cfg: Config, training: bool) -> List[str]:
    """Notes for the safety hooks ``cfg`` lacks, each with the line to add
    (the configs of this package inherit them from their ``_base_``)."""
    hooks = cfg.get('default_hooks') or {}
    names = [_type_name(h) for h in cfg.get('custom_hooks') or []]
    wanted = [('CheckpointMatchHook', 'custom_hooks',
               "dict(type='mmdet_conddetr.CheckpointMatchHook')",
               'a checkpoint that does not fit the model is loaded partly')]
    if training:
        wanted += [
            ('NonFiniteLossHook', 'custom_hooks',
             "dict(type='mmdet_conddetr.NonFiniteLossHook')",
             'a NaN/inf loss goes on to write NaN checkpoints'),
            ('AtomicCheckpointHook', 'default_hooks.checkpoint',
             "dict(type='mmdet_conddetr.AtomicCheckpointHook')",
             'a run killed while saving leaves a truncated checkpoint')
        ]
        names.append(_type_name(hooks.get('checkpoint'))
                     if isinstance(hooks, dict) else None)
    return [
        f'The config has no {name}: {why}. Add {entry} to {key} (the '
        'configs of mmdet_conddetr inherit it from their _base_ files).'
        for name, key, entry, why in wanted if name not in names
    ]


def _checkpoints_in(work_dir: str) -> List[str]:
    files = glob.glob(osp.join(work_dir, '*.pth'))
    return sorted(files, key=osp.getmtime)


def _check_file(path: str, fix: str = '') -> None:
    if not isinstance(path, str) or '://' in path:
        return
    try:
        read_checkpoint_file(path)
    except CheckpointFileError as error:
        raise CheckpointFileError(f'{error}{fix}') from None


def _check_resume(cfg: Config) -> Tuple[List[str], Optional[str]]:
    """Check the checkpoint ``--resume`` will use: (notes, its path)."""
    work_dir = cfg.work_dir
    if cfg.get('load_from'):  # --resume PATH
        _check_file(cfg.load_from)
        return [], cfg.load_from
    last = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(last):
        return [f'--resume: no checkpoint in {work_dir} yet (no '
                'last_checkpoint file), training starts from scratch.'], None
    with open(last) as f:
        named = f.read().strip()
    others = [p for p in _checkpoints_in(work_dir) if p != named]
    pick = (' Resume from an earlier checkpoint with --resume PATH; '
            'checkpoints in the work directory (oldest first): ' +
            ', '.join(others) + '.') if others else (
                ' No other checkpoint is in the work directory; start '
                'again without --resume (or use another --work-dir).')
    if not named:
        raise CheckpointFileError(
            f'{last} is empty, so there is no checkpoint to resume from '
            '(it was probably written by a run killed in the middle, '
            'without mmdet_conddetr.AtomicCheckpointHook).' + pick)
    if not osp.isfile(named):
        raise CheckpointFileError(
            f'{last} names {named}, which does not exist (deleted or '
            'moved?).' + pick)
    _check_file(named, fix=pick)
    return [], named


def check_launch(cfg: Config) -> List[str]:
    """Processes per node vs. GPUs (``tools/dist_train.sh CONFIG GPUS``).

    Every process of a node checks the same numbers, so all of them stop
    with the same message (a single failing rank would leave the others
    waiting for it).
    """
    launcher = cfg.get('launcher', 'none') or 'none'
    if launcher == 'none':
        return []
    per_node = None
    for name in ('LOCAL_WORLD_SIZE', 'SLURM_NTASKS_PER_NODE',
                 'OMPI_COMM_WORLD_LOCAL_SIZE'):
        value = os.environ.get(name, '')
        if value.split('(')[0].isdigit():
            per_node = int(value.split('(')[0])
            break
    local_rank = int(os.environ.get('LOCAL_RANK', '0') or 0)
    wanted = per_node if per_node is not None else local_rank + 1
    if torch.cuda.is_available():
        gpus = torch.cuda.device_count()
        if wanted > gpus:
            raise ConfigCheckError(
                f'{wanted} processes were started on this node (GPUS of '
                f'tools/dist_train.sh / tasks per node) but only {gpus} '
                'GPU(s) are visible here: each process needs its own GPU. '
                f'Run `tools/dist_train.sh CONFIG {gpus}` (and scale the '
                'batch with --auto-scale-lr if needed), or make more GPUs '
                'visible (CUDA_VISIBLE_DEVICES).')
        return []
    cpus = os.cpu_count() or 1
    if per_node is not None and per_node > cpus:
        return [f'{per_node} CPU processes on a machine with {cpus} cores: '
                'they share the cores and run slower than fewer would.']
    return []


def _common_checks(cfg: Config, config_path: str, keys, loaders,
                   phases) -> List[str]:
    set_cli_context(config=config_path, work_dir=cfg.get('work_dir'))
    check_launcher_env(cfg.get('launcher', 'none'))
    notes = check_launch(cfg)
    check_amp_device(cfg)
    check_work_dir(cfg.work_dir)
    check_loop_trios(cfg, phases)
    check_registry_types(cfg, _RUNNER_KEYS + keys)
    check_dataloaders(cfg, loaders)
    check_num_classes(cfg, loaders)
    check_data_paths(cfg, loaders)
    set_download_timeout()
    set_cli_context(urls=config_urls(cfg))
    return notes


def prepare_train(cfg: Config, config_path: str) -> List[str]:
    """Check ``cfg`` for ``tools/train.py``; returns notes to log."""
    loaders = ['train_dataloader']
    keys = ('train_dataloader', 'train_cfg', 'optim_wrapper',
            'param_scheduler')
    if cfg.get('val_cfg') is not None and cfg.get('val_dataloader'):
        loaders.append('val_dataloader')
        keys += ('val_dataloader', 'val_cfg', 'val_evaluator')
    notes = _common_checks(cfg, config_path, keys, loaders, ('train', 'val'))
    if cfg.get('resume'):
        notes += _check_resume(cfg)[0]
    else:
        check_new_run_dir(cfg.work_dir, resume=False)
        if cfg.get('load_from'):
            _check_file(cfg.load_from)
    return notes + safety_notes(cfg, training=True)


def prepare_test(cfg: Config, config_path: str, checkpoint: str) -> List[str]:
    """Check ``cfg`` and ``checkpoint`` for ``tools/test.py``."""
    notes = _common_checks(cfg, config_path,
                           ('test_dataloader', 'test_cfg', 'test_evaluator'),
                           ['test_dataloader'], ('test', ))
    _check_file(checkpoint)
    return notes + safety_notes(cfg, training=False)
