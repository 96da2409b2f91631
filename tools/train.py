"""Train a detector with MMEngine's runner (the ``mmdet_conddetr`` scope).

Usage::

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
        [--auto-scale-lr] [--cfg-options KEY=VALUE ...]
        [--launcher {none,pytorch,slurm,mpi}]

Distributed runs are started by ``tools/dist_train.sh`` (torchrun) or
``tools/slurm_train.sh``. Without CUDA they use the ``gloo`` backend.
"""
import argparse

# Registers the mmdet_conddetr scope and the checkpoint types torch.load may
# unpickle; must come before anything loads a checkpoint.
import mmdet_conddetr  # noqa: F401
from mmdet_conddetr.errors import ConfigCheckError
from mmdet_conddetr.engine import (enable_amp, prepare_train, run_cli,
                                   setup_cpu_distributed)
from mmdet_conddetr.engine.runner_setup import (
    add_runner_arguments, build_runner, load_runner_config, parse_runner_args)


def parse_args():
    parser = argparse.ArgumentParser(description='Train a detector')
    parser.add_argument('config', help='train config file path')
    add_runner_arguments(parser, 'the dir to save logs and models')
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
    return parse_runner_args(parser)


def main():
    args = parse_args()
    cfg = load_runner_config(args)

    notes = []
    if args.amp:
        notes += enable_amp(cfg)

    if args.auto_scale_lr:
        auto_scale_lr = cfg.get('auto_scale_lr')
        if not auto_scale_lr or 'base_batch_size' not in auto_scale_lr:
            raise ConfigCheckError(
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

    build_runner(cfg, notes).train()


if __name__ == '__main__':
    run_cli(main)
