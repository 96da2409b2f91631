"""Test (and evaluate) a detector checkpoint with MMEngine's runner.

Usage::

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out FILE.pkl]
        [--show] [--show-dir DIR] [--wait-time SECONDS] [--tta]
        [--cfg-options KEY=VALUE ...] [--launcher {none,pytorch,slurm,mpi}]

The metrics are logged and written as JSON to ``WORK_DIR/<timestamp>/``.
Distributed runs are started by ``tools/dist_test.sh`` (torchrun) or
``tools/slurm_test.sh``. Without CUDA they use the ``gloo`` backend.
"""
import argparse
import os.path as osp
import warnings
from copy import deepcopy

from mmdet.engine.hooks.utils import trigger_visualization_hook
from mmdet.evaluation import DumpDetResults
from mmengine.config import ConfigDict

# Registers the mmdet_conddetr scope and the checkpoint types torch.load may
# unpickle; must come before anything loads a checkpoint.
import mmdet_conddetr  # noqa: F401
from mmdet_conddetr.engine import (prepare_test, run_cli,
                                   setup_cpu_distributed)
from mmdet_conddetr.engine.config_checks.runtime import check_output_file
from mmdet_conddetr.engine.runner_setup import (
    add_runner_arguments, build_runner, load_runner_config, parse_runner_args)


def parse_args():
    parser = argparse.ArgumentParser(
        description='Test (and evaluate) a detector')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    add_runner_arguments(
        parser,
        'the directory to save the file containing evaluation metrics')
    parser.add_argument(
        '--out',
        type=str,
        help='dump predictions to a pickle file (.pkl/.pickle) for offline '
        'evaluation')
    parser.add_argument(
        '--show', action='store_true', help='show prediction results')
    parser.add_argument(
        '--show-dir',
        help='directory where painted images will be saved; it is created '
        'under work_dir/<timestamp>/')
    parser.add_argument(
        '--wait-time',
        type=float,
        default=2,
        help='the interval of --show (seconds)')
    parser.add_argument(
        '--tta',
        action='store_true',
        help='test-time augmentation (horizontal flip) with DetTTAModel')
    args = parse_runner_args(parser)
    if args.out is not None and not args.out.endswith(('.pkl', '.pickle')):
        parser.error('--out must name a .pkl or .pickle file')
    return args


def _use_tta(cfg):
    """Wrap the model in a test-time-augmentation model (flip TTA)."""
    if 'tta_model' not in cfg:
        warnings.warn('The config has no `tta_model`; using DetTTAModel '
                      'with NMS merging.')
        cfg.tta_model = dict(
            type='mmdet.DetTTAModel',
            tta_cfg=dict(
                nms=dict(type='nms', iou_threshold=0.5), max_per_img=100))
    if 'tta_pipeline' not in cfg:
        warnings.warn('The config has no `tta_pipeline`; flipping the test '
                      'pipeline horizontally.')
        data_cfg = cfg.test_dataloader.dataset
        while 'dataset' in data_cfg:  # dataset wrappers
            data_cfg = data_cfg['dataset']
        tta_pipeline = deepcopy(data_cfg.pipeline)
        tta_pipeline[-1] = dict(
            type='TestTimeAug',
            transforms=[
                [
                    dict(type='RandomFlip', prob=1.),
                    dict(type='RandomFlip', prob=0.)
                ],
                [
                    dict(
                        type='PackDetInputs',
                        meta_keys=('img_id', 'img_path', 'ori_shape',
                                   'img_shape', 'scale_factor', 'flip',
                                   'flip_direction'))
                ],
            ])
        cfg.tta_pipeline = tta_pipeline
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline


def main():
    args = parse_args()
    cfg = load_runner_config(args)

    if not osp.isfile(args.checkpoint) and '://' not in args.checkpoint:
        raise FileNotFoundError(f'checkpoint not found: {args.checkpoint}')
    cfg.load_from = args.checkpoint
    cfg.resume = False

    if args.show or args.show_dir:
        cfg = trigger_visualization_hook(cfg, args)

    if args.tta:
        _use_tta(cfg)

    notes = prepare_test(cfg, args.config, args.checkpoint)
    if args.out is not None:
        check_output_file(args.out, '--out')
    notes += setup_cpu_distributed(cfg, args.launcher)

    runner = build_runner(cfg, notes)

    if args.out is not None:
        runner.test_evaluator.metrics.append(
            DumpDetResults(out_file_path=args.out))

    runner.test()


if __name__ == '__main__':
    run_cli(main)
