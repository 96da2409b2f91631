"""Checks and safety settings ``tools/train.py`` / ``tools/test.py`` apply to
the final config before the runner is built.

:func:`prepare_train` / :func:`prepare_test` (each returns notes to log):

* distributed runs: no more processes per node than visible GPUs;
* the work directory must be writable (checked before anything runs);
* every ``type`` of the config must be registered (nearest names suggested),
  the head's ``num_classes`` must match the datasets, and the data files of
  the dataloaders that will run must exist (see
  :mod:`mmdet_conddetr.utils.config_checks`);
* the checkpoint to test, to ``load_from`` or to resume from is read once
  with :func:`mmdet_conddetr.checkpoint.read_checkpoint_file`, whose errors
  name the problem (missing, empty, truncated, not a checkpoint...);
  ``--resume`` without a path checks what ``last_checkpoint`` names;
* the dataloaders use the robust ``CocoDataset`` / ``LoadImageFromFile``
  of :mod:`mmdet_conddetr.datasets` (:func:`use_robust_data`);
* a plain ``CheckpointHook`` becomes :class:`.hooks.AtomicCheckpointHook`
  (same arguments), training gets a :class:`.hooks.NonFiniteLossHook` unless
  the config has one, and every run a :class:`.hooks.CheckpointMatchHook`,
  so a checkpoint that does not fit the model is refused instead of being
  loaded partially.
"""
import glob
import os
import os.path as osp
from typing import List, Optional, Tuple

import torch
from mmengine.config import Config, ConfigDict

from mmdet_conddetr.checkpoint import CheckpointFileError, read_checkpoint_file
from mmdet_conddetr.utils.config_checks import (check_data_paths,
                                                check_num_classes,
                                                check_registry_types,
                                                check_work_dir)
from .cli import set_cli_context
from mmdet_conddetr.errors import ConfigCheckError

__all__ = [
    'prepare_train', 'prepare_test', 'use_safe_hooks', 'use_robust_data',
    'check_launch'
]

# Config keys the runner builds in every run (helper variables such as
# ``train_pipeline`` are checked where they are used).
_RUNNER_KEYS = ('model', 'default_hooks', 'custom_hooks', 'visualizer',
                'log_processor', 'model_wrapper_cfg')

_PLAIN_CHECKPOINT_HOOKS = ('CheckpointHook', 'mmengine.CheckpointHook',
                           'mmdet.CheckpointHook')


def _type_name(hook_cfg) -> Optional[str]:
    hook_type = hook_cfg.get('type') if isinstance(hook_cfg, dict) else None
    if isinstance(hook_type, type):
        return hook_type.__name__
    return hook_type.split('.')[-1] if isinstance(hook_type, str) else None


def use_safe_hooks(cfg: Config,
                   training: bool,
                   strict_load: bool,
                   checkpoint: Optional[str] = None) -> List[str]:
    """Add/replace the reliability hooks in ``cfg`` (in place)."""
    notes = []
    hooks = cfg.get('default_hooks') or {}
    ckpt_hook = hooks.get('checkpoint') if isinstance(hooks, dict) else None
    if isinstance(ckpt_hook, dict):
        hook_type = ckpt_hook.get('type')
        if hook_type in _PLAIN_CHECKPOINT_HOOKS or (
                isinstance(hook_type, type)
                and hook_type.__name__ == 'CheckpointHook'):
            ckpt_hook['type'] = 'mmdet_conddetr.AtomicCheckpointHook'
            if training:
                notes.append('Checkpoints are written atomically '
                             '(AtomicCheckpointHook instead of '
                             'CheckpointHook).')
    custom = list(cfg.get('custom_hooks') or [])
    names = [_type_name(h) for h in custom]
    if training and 'NonFiniteLossHook' not in names:
        custom.append(ConfigDict(type='mmdet_conddetr.NonFiniteLossHook'))
        notes.append('NonFiniteLossHook added: a NaN/inf loss stops training '
                     "(custom_hooks=[dict(type='NonFiniteLossHook', "
                     "action='skip')] skips such steps instead).")
    if 'CheckpointMatchHook' not in names:
        custom.append(
            ConfigDict(
                type='mmdet_conddetr.CheckpointMatchHook',
                strict=strict_load,
                checkpoint=checkpoint))
    cfg.custom_hooks = custom
    return notes


_DATASET_SWAPS = {'CocoDataset': 'mmdet_conddetr.RobustCocoDataset'}
_TRANSFORM_SWAPS = {
    'LoadImageFromFile': 'mmdet_conddetr.RobustLoadImageFromFile'
}


def _swap_transforms(node) -> int:
    count = 0
    if isinstance(node, dict):
        if node.get('type') in _TRANSFORM_SWAPS:
            node['type'] = _TRANSFORM_SWAPS[node['type']]
            count += 1
        for key, value in node.items():
            if key != 'type':
                count += _swap_transforms(value)
    elif isinstance(node, (list, tuple)):
        for item in node:
            count += _swap_transforms(item)
    return count


def _datasets(node):
    if not isinstance(node, dict):
        return
    yield node
    for item in node.get('datasets') or []:
        yield from _datasets(item)
    yield from _datasets(node.get('dataset'))


def use_robust_data(cfg: Config, loaders) -> List[str]:
    """Use :class:`~mmdet_conddetr.datasets.RobustCocoDataset` and
    :class:`~mmdet_conddetr.datasets.RobustLoadImageFromFile` where the
    dataloaders in ``loaders`` ask for mmdet's ``CocoDataset`` and mmcv's
    ``LoadImageFromFile`` (same arguments; clear errors, counted repairs).
    Explicitly scoped names (``mmdet.CocoDataset``) are left alone."""
    swapped = 0
    for loader in loaders:
        loader_cfg = cfg.get(loader)
        if not isinstance(loader_cfg, dict):
            continue
        for dataset in _datasets(loader_cfg.get('dataset')):
            if dataset.get('type') in _DATASET_SWAPS:
                dataset['type'] = _DATASET_SWAPS[dataset['type']]
                swapped += 1
            swapped += _swap_transforms(dataset.get('pipeline'))
    if cfg.get('tta_pipeline') is not None:
        swapped += _swap_transforms(cfg.tta_pipeline)
    if not swapped:
        return []
    return ['Data loading uses RobustCocoDataset / RobustLoadImageFromFile '
            '(clear errors for bad annotations and images).']


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


def prepare_train(cfg: Config, config_path: str) -> List[str]:
    """Check ``cfg`` for ``tools/train.py`` and add the safety hooks."""
    set_cli_context(config=config_path, work_dir=cfg.get('work_dir'))
    notes = check_launch(cfg)
    check_work_dir(cfg.work_dir)
    loaders = ['train_dataloader']
    if cfg.get('val_cfg') is not None and cfg.get('val_dataloader'):
        loaders.append('val_dataloader')
    check_registry_types(
        cfg, _RUNNER_KEYS + ('train_dataloader', 'train_cfg', 'optim_wrapper',
                             'param_scheduler') +
        (('val_dataloader', 'val_cfg', 'val_evaluator')
         if len(loaders) > 1 else ()))
    check_num_classes(cfg, loaders)
    check_data_paths(cfg, loaders)
    notes += use_robust_data(cfg, loaders)
    if cfg.get('resume'):
        resume_notes, checkpoint = _check_resume(cfg)
        notes += resume_notes
    else:
        checkpoint = cfg.get('load_from')
        if checkpoint:
            _check_file(checkpoint)
    notes += use_safe_hooks(
        cfg, training=True, strict_load=False, checkpoint=checkpoint)
    return notes


def prepare_test(cfg: Config, config_path: str, checkpoint: str) -> List[str]:
    """Check ``cfg`` and ``checkpoint`` for ``tools/test.py``."""
    set_cli_context(config=config_path, work_dir=cfg.get('work_dir'))
    notes = check_launch(cfg)
    check_work_dir(cfg.work_dir)
    check_registry_types(
        cfg, _RUNNER_KEYS + ('test_dataloader', 'test_cfg', 'test_evaluator'))
    check_num_classes(cfg, ['test_dataloader'])
    check_data_paths(cfg, ['test_dataloader'])
    _check_file(checkpoint)
    notes += use_robust_data(cfg, ['test_dataloader'])
    return notes + use_safe_hooks(
        cfg, training=False, strict_load=True, checkpoint=checkpoint)
