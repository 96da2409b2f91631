"""Train a detector with MMEngine's runner (the ``mmdet_conddetr`` scope).

Usage::

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
        [--auto-scale-lr] [--cfg-options KEY=VALUE ...]
        [--launcher {none,pytorch,slurm,mpi}]

Distributed runs are started by ``tools/dist_train.sh`` (torchrun) or
``tools/slurm_train.sh``. Without CUDA they use the ``gloo`` backend.
"""
import argparse
import importlib.util
import os
import os.path as osp
import sys


def _make_project_importable():
    # Run as a script, sys.path[0] is tools/. Use the checkout this file
    # lives in unless mmdet_conddetr is installed or on PYTHONPATH already.
    if importlib.util.find_spec('mmdet_conddetr') is None:
        sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))


_make_project_importable()

# Registers the mmdet_conddetr scope and the checkpoint types torch.load may
# unpickle; must come before anything loads a checkpoint.
import mmdet_conddetr  # noqa: E402,F401
from mmdet_conddetr.engine import (enable_amp,  # noqa: E402
                                   setup_cpu_distributed)

from mmengine.config import DictAction  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

from mmdet.utils import setup_cache_size_limit_of_dynamo  # noqa: E402
from mmdet_conddetr.registry import RUNNERS  # noqa: E402
# Reliability (issue 8): clear errors for bad input, crash-safe hooks.
from mmdet_conddetr.engine import prepare_train, run_cli  # noqa: E402
from mmdet_conddetr.utils.config_checks import load_config  # noqa: E402


def parse_args():
    parser = argparse.ArgumentParser(description='Train a detector')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--amp',
        action='store_true',
        default=False,
        help='enable automatic-mixed-precision training (float16 with '
        'dynamic loss scaling on GPUs, bfloat16 autocast on CPUs)')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='enable automatically scaling LR by the total batch size')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from the given checkpoint; without a path, resume '
        'from the latest checkpoint in the work directory')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the config with key=value pairs, merged '
        'into the config. A list value is written key="[a,b]" or key=a,b; '
        'nested lists/tuples like key="[(a,b),(c,d)]" work too. Quote the '
        'value and do not put spaces in it.')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    # torch.distributed.launch of PyTorch >= 2.0 passes --local-rank,
    # older versions --local_rank; torchrun sets LOCAL_RANK instead.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def main():
    args = parse_args()

    # Keep torch.compile from recompiling the dynamic-shape parts forever.
    setup_cache_size_limit_of_dynamo()

    cfg = load_config(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if cfg.get('default_scope') is None:
        cfg.default_scope = 'mmdet_conddetr'

    # work_dir priority: command line > config > ./work_dirs/<config name>
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])

    notes = []
    if args.amp:
        notes += enable_amp(cfg)

    if args.auto_scale_lr:
        auto_scale_lr = cfg.get('auto_scale_lr')
        if not auto_scale_lr or 'base_batch_size' not in auto_scale_lr:
            raise RuntimeError(
                '--auto-scale-lr needs `auto_scale_lr = dict(enable=False, '
                'base_batch_size=N)` in the config (N: the total batch size '
                f'its learning rate was tuned for); {args.config} has '
                + ('no `auto_scale_lr`.' if not auto_scale_lr else
                   'no `auto_scale_lr.base_batch_size`.'))
        cfg.auto_scale_lr.enable = True

    # An explicit checkpoint wins over looking for the latest one.
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume

    notes += prepare_train(cfg, args.config)
    notes += setup_cpu_distributed(cfg, args.launcher)

    if 'runner_type' not in cfg:
        runner = Runner.from_cfg(cfg)
    else:
        runner = RUNNERS.build(cfg)
    for note in notes:
        runner.logger.info(note)

    runner.train()


if __name__ == '__main__':
    run_cli(main)
