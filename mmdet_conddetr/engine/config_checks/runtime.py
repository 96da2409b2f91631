"""Settings torch or mmengine reject, checked before anything runs.

Each of these would otherwise stop a run with a traceback from deep inside
torch's ``DataLoader``, mmengine's ``Runner`` or ``os.environ`` -- often after
minutes of dataset loading. Here they are reported together, each with the
key or variable to change:

* :func:`check_dataloaders`: ``batch_size`` a positive integer,
  ``num_workers`` >= 0, ``persistent_workers`` / ``prefetch_factor`` only
  with worker processes (what people change while debugging);
* :func:`check_loop_trios`: mmengine needs ``X_dataloader``, ``X_cfg`` and
  ``X_evaluator`` (``optim_wrapper`` for training) all set or all None;
* :func:`check_launcher_env`: ``--launcher pytorch/slurm/mpi`` needs the
  variables its launcher sets;
* :func:`check_amp_device` / :func:`check_device`: CUDA-only settings where
  CUDA is not available;
* :func:`check_new_run_dir`: a work directory that holds the checkpoints of
  another run is not overwritten unless the run resumes it;
  :func:`check_output_file`: an output file can be written (before the work
  that fills it).
"""
import glob
import os
import os.path as osp
import tempfile
from typing import List, Sequence

import torch
from mmengine.config import Config

from mmdet_conddetr.errors import ConfigCheckError, WorkDirError

__all__ = [
    'check_dataloaders', 'check_loop_trios', 'check_launcher_env',
    'check_amp_device', 'check_device', 'check_new_run_dir',
    'check_output_file'
]


def _raise(problems: List[str], fix: str) -> None:
    if problems:
        raise ConfigCheckError('\n  '.join(['invalid settings:'] + problems) +
                               '\n' + fix)


def check_dataloaders(cfg: Config, loaders: Sequence[str]) -> None:
    """Raise ConfigCheckError for dataloader settings torch rejects."""
    problems = []
    for loader in loaders:
        loader_cfg = cfg.get(loader)
        if not isinstance(loader_cfg, dict):
            continue
        size = loader_cfg.get('batch_size', 1)
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            problems.append(f'{loader}.batch_size={size!r}: must be a '
                            f'positive integer (e.g. {loader}.batch_size=2)')
        workers = loader_cfg.get('num_workers', 0)
        if isinstance(workers, bool) or not isinstance(workers, int) or \
                workers < 0:
            problems.append(f'{loader}.num_workers={workers!r}: must be 0 '
                            '(load in the main process) or more')
            continue
        if workers == 0 and loader_cfg.get('persistent_workers'):
            problems.append(
                f'{loader}.persistent_workers=True needs worker processes '
                f'but {loader}.num_workers=0: set {loader}.persistent_'
                f'workers=False, or {loader}.num_workers=2 (or more)')
        if workers == 0 and loader_cfg.get('prefetch_factor') is not None:
            problems.append(
                f'{loader}.prefetch_factor='
                f'{loader_cfg.get("prefetch_factor")!r} needs worker '
                f'processes but {loader}.num_workers=0: set {loader}.'
                f'prefetch_factor=None, or {loader}.num_workers=2 (or more)')
    _raise(problems, 'Change them in the config or with --cfg-options '
           'KEY=VALUE.')


_TRIOS = {
    'train': ('train_dataloader', 'train_cfg', 'optim_wrapper'),
    'val': ('val_dataloader', 'val_cfg', 'val_evaluator'),
    'test': ('test_dataloader', 'test_cfg', 'test_evaluator'),
}


def check_loop_trios(cfg: Config, phases: Sequence[str]) -> None:
    """mmengine builds a phase from three keys that must be all set or all
    None; raise ConfigCheckError naming the missing ones."""
    problems = []
    for phase in phases:
        keys = _TRIOS[phase]
        missing = [k for k in keys if cfg.get(k) is None]
        if missing and len(missing) < len(keys):
            given = [k for k in keys if k not in missing]
            off = ' '.join(f'{k}=None' for k in given)
            problems.append(
                f'{", ".join(given)} set but {", ".join(missing)} None: '
                f'mmengine needs all of {", ".join(keys)} or none; set '
                f'{" and ".join(missing)}, or turn {phase} off with '
                f'--cfg-options {off}')
    _raise(problems, 'Fix the config (a _base_ may set some of them).')


_LAUNCHER_ENV = {
    'pytorch': (('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT'),
                'torchrun: tools/dist_train.sh CONFIG GPUS (or '
                'tools/dist_test.sh CONFIG CHECKPOINT GPUS)'),
    'slurm': (('SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_NODELIST'),
              'srun: tools/slurm_train.sh PARTITION JOB CONFIG WORK_DIR '
              '(or tools/slurm_test.sh)'),
    'mpi': (('OMPI_COMM_WORLD_RANK', 'OMPI_COMM_WORLD_SIZE', 'MASTER_ADDR'),
            'mpirun, with MASTER_ADDR exported'),
}


def check_launcher_env(launcher: str) -> None:
    """Raise ConfigCheckError when ``--launcher`` lacks its environment."""
    if launcher in (None, 'none') or launcher not in _LAUNCHER_ENV:
        return
    names, how = _LAUNCHER_ENV[launcher]
    missing = [n for n in names if not os.environ.get(n)]
    if launcher == 'slurm' and os.environ.get('MASTER_ADDR'):
        missing = [n for n in missing if n != 'SLURM_NODELIST']
    if missing:
        raise ConfigCheckError(
            f'--launcher {launcher} needs the environment variables its '
            f'launcher sets, and {", ".join(missing)} '
            f'{"is" if len(missing) == 1 else "are"} not set: this process '
            f'was not started by it. Start the job with {how}, or drop '
            '--launcher to train in a single process.')


def _accelerator() -> bool:
    from mmengine.device import (is_cuda_available, is_mlu_available,
                                 is_musa_available, is_npu_available)
    return (is_cuda_available() or is_npu_available() or is_mlu_available()
            or is_musa_available())


def check_amp_device(cfg: Config) -> None:
    """mmengine's ``AmpOptimWrapper`` asserts a GPU; say what to use."""
    wrapper = cfg.get('optim_wrapper')
    kind = wrapper.get('type') if isinstance(wrapper, dict) else None
    if not isinstance(kind, str) or kind.split('.')[-1] != 'AmpOptimWrapper':
        return
    if not _accelerator():
        raise ConfigCheckError(
            f"optim_wrapper.type={kind!r} needs a GPU and CUDA is not "
            "available here. Use optim_wrapper.type='mmdet_conddetr."
            "CPUAmpOptimWrapper' (bfloat16 autocast on the CPU; "
            "tools/train.py --amp picks it by itself), or 'OptimWrapper' for "
            'full precision.')


def check_device(device: str, option: str = '--device') -> None:
    """Raise ConfigCheckError if ``device`` names CUDA where it is not
    available (``torch.device`` would accept it and fail later)."""
    if not str(device).startswith('cuda'):
        return
    if not torch.cuda.is_available():
        why = ('this PyTorch is built without CUDA'
               if torch.version.cuda is None else
               'no GPU is visible (driver, CUDA_VISIBLE_DEVICES)')
        raise ConfigCheckError(
            f'{option} {device} asks for a GPU but CUDA is not available '
            f'({why}). Run with {option} cpu.')
    index = str(device).partition(':')[2]
    if index.isdigit() and int(index) >= torch.cuda.device_count():
        raise ConfigCheckError(
            f'{option} {device}: only {torch.cuda.device_count()} GPU(s) are '
            f'visible (cuda:0 .. cuda:{torch.cuda.device_count() - 1}).')


def check_new_run_dir(work_dir: str, resume: bool) -> None:
    """Refuse to start a new run in a work directory holding another run's
    checkpoints (mmengine would overwrite ``epoch_N.pth`` and
    ``last_checkpoint`` and mix the two runs' logs)."""
    if resume or not isinstance(work_dir, str) or '://' in work_dir:
        return
    checkpoints = sorted(glob.glob(osp.join(work_dir, '*.pth')))
    last = osp.join(work_dir, 'last_checkpoint')
    if not checkpoints and not osp.isfile(last):
        return
    shown = ', '.join(osp.basename(c) for c in checkpoints[:4]) + (
        ', ...' if len(checkpoints) > 4 else '')
    raise WorkDirError(
        f'the work directory {work_dir} holds another run ('
        f'{len(checkpoints)} checkpoint(s): {shown or "none"}'
        f'{", last_checkpoint" if osp.isfile(last) else ""}); a new run '
        'would overwrite them. Continue that run with --resume, or start '
        'this one in another directory with --work-dir DIR (or move the '
        'old files away).')


def check_output_file(path: str, option: str) -> None:
    """Raise WorkDirError if ``path`` cannot be written: its folder cannot
    be created, is read-only or full (probed with a small file)."""
    folder = osp.dirname(osp.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix='.probe_') as f:
            f.write(b'ok')
            f.flush()
    except OSError as error:
        reason = error.strerror or str(error)
        blocker = folder
        while blocker and not osp.exists(blocker):
            blocker = osp.dirname(blocker)
        if osp.isfile(blocker):
            reason = f'{blocker} is a file, not a folder'
        raise WorkDirError(
            f'{option} {path}: cannot write to {folder} ({reason}). Pass a '
            'path in a writable folder with free space.') from error
