"""Helpers that let ``tools/train.py`` and ``tools/test.py`` run distributed
jobs on machines without CUDA.

mmengine assumes GPUs when it starts a distributed job:

* its default communication backend is NCCL, which needs CUDA;
* ``mmengine.dist.init_dist`` calls ``torch.cuda.set_device(local_rank)``
  for the ``pytorch``, ``slurm`` and ``mpi`` launchers, which raises on a
  CPU-only PyTorch build;
* ``Runner.wrap_model`` passes ``device_ids=[LOCAL_RANK]`` to
  ``DistributedDataParallel``, which rejects device ids for a CPU module.

:func:`setup_cpu_distributed` fixes all three before the runner is built:
it switches the backend to ``gloo``, asks for a DDP wrapper with
``device_ids=None`` and initialises the process group itself (the runner
then sees an initialised group and skips its own ``init_dist``).
"""
import datetime
import os
import subprocess
from typing import List

import torch
import torch.distributed as torch_dist
from mmengine.config import Config, ConfigDict
from mmengine.registry import MODEL_WRAPPERS
from torch.nn.parallel import DistributedDataParallel

__all__ = ['setup_cpu_distributed', 'init_cpu_process_group']

_DEFAULT_PORT = '29500'


def _set_env_from_slurm() -> None:
    os.environ['RANK'] = os.environ['SLURM_PROCID']
    os.environ['WORLD_SIZE'] = os.environ['SLURM_NTASKS']
    os.environ['LOCAL_RANK'] = os.environ.get('SLURM_LOCALID', '0')
    os.environ.setdefault('MASTER_PORT', _DEFAULT_PORT)
    if 'MASTER_ADDR' not in os.environ:
        node_list = os.environ['SLURM_NODELIST']
        os.environ['MASTER_ADDR'] = subprocess.getoutput(
            f'scontrol show hostname {node_list} | head -n1')


def _set_env_from_mpi() -> None:
    os.environ['RANK'] = os.environ['OMPI_COMM_WORLD_RANK']
    os.environ['WORLD_SIZE'] = os.environ['OMPI_COMM_WORLD_SIZE']
    os.environ['LOCAL_RANK'] = os.environ.get('OMPI_COMM_WORLD_LOCAL_RANK',
                                              '0')
    os.environ.setdefault('MASTER_PORT', _DEFAULT_PORT)
    if 'MASTER_ADDR' not in os.environ:
        raise RuntimeError('The mpi launcher needs MASTER_ADDR to be set')


def init_cpu_process_group(launcher: str,
                           backend: str = 'gloo',
                           timeout=None,
                           **kwargs) -> None:
    """Initialise ``torch.distributed`` without touching CUDA.

    Rank, world size and rendezvous address come from the environment the
    launcher set up (``torchrun`` for ``pytorch``; ``SLURM_*`` and
    ``OMPI_*`` variables for ``slurm`` and ``mpi``), as in
    ``mmengine.dist.init_dist``.
    """
    if torch_dist.is_initialized():
        return
    if launcher == 'slurm':
        port = kwargs.pop('port', None)
        if port is not None:
            os.environ['MASTER_PORT'] = str(port)
        _set_env_from_slurm()
    elif launcher == 'mpi':
        _set_env_from_mpi()
    elif launcher != 'pytorch':
        raise ValueError(f'Invalid launcher type: {launcher}')
    if timeout is not None and not isinstance(timeout, datetime.timedelta):
        timeout = datetime.timedelta(seconds=timeout)
    if timeout is not None:
        kwargs['timeout'] = timeout
    torch_dist.init_process_group(
        backend=backend,
        init_method='env://',
        rank=int(os.environ['RANK']),
        world_size=int(os.environ['WORLD_SIZE']),
        **kwargs)


def _is_ddp(wrapper_type) -> bool:
    if isinstance(wrapper_type, str):
        wrapper_type = MODEL_WRAPPERS.get(wrapper_type)
    return isinstance(wrapper_type, type) and issubclass(
        wrapper_type, DistributedDataParallel)


def setup_cpu_distributed(cfg: Config, launcher: str) -> List[str]:
    """Prepare ``cfg`` (in place) and the process group for a distributed
    run when CUDA is not available.

    Does nothing for ``launcher='none'`` or when CUDA is available. Returns
    human-readable notes about what was changed, for the caller to log once
    the runner's logger exists.
    """
    if launcher == 'none' or torch.cuda.is_available():
        return []
    notes = []

    env_cfg = cfg.get('env_cfg')
    if env_cfg is None:
        env_cfg = cfg.env_cfg = ConfigDict()
    dist_cfg = env_cfg.get('dist_cfg')
    if dist_cfg is None:
        dist_cfg = env_cfg.dist_cfg = ConfigDict()
    old_backend = dist_cfg.get('backend', 'nccl')
    if old_backend != 'gloo':
        dist_cfg['backend'] = 'gloo'
        notes.append('CUDA is not available: distributed backend set to '
                     f"'gloo' (the config asked for '{old_backend}').")
    else:
        notes.append("CUDA is not available: using the 'gloo' "
                     'distributed backend.')

    # DistributedDataParallel only accepts device_ids for GPU modules.
    wrapper_cfg = cfg.get('model_wrapper_cfg')
    if wrapper_cfg is None:
        cfg.model_wrapper_cfg = ConfigDict(
            type='MMDistributedDataParallel',
            broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False),
            device_ids=None)
        notes.append('Model wrapped by MMDistributedDataParallel on CPU '
                     '(device_ids=None).')
    elif 'device_ids' not in wrapper_cfg and _is_ddp(
            wrapper_cfg.get('type', 'MMDistributedDataParallel')):
        wrapper_cfg['device_ids'] = None

    init_cpu_process_group(launcher, **dist_cfg)
    notes.append(f'Initialised torch.distributed ({launcher} launcher, '
                 f'gloo): rank {torch_dist.get_rank()} of '
                 f'{torch_dist.get_world_size()}.')
    return notes
