"""Detect objects in images and draw the boxes with class names.

    python tools/demo/image_demo.py IMG_OR_DIR CONFIG --weights CKPT \
        [--out-dir outputs] [--pred-score-thr 0.3] [--device cpu]

A thin front end of mmdet's ``DetInferencer`` in the ``mmdet_conddetr``
scope: it writes ``vis/<image>`` (the drawing) and ``preds/<image>.json``.
A wrong device, input, config, checkpoint or output folder is reported in
one line (``error: ...``) before anything is built or written.
"""
import argparse
import os.path as osp

from mmdet.apis import DetInferencer

import mmdet_conddetr  # noqa: F401  (scope, safe checkpoint loading)
from mmdet_conddetr.checkpoint import read_checkpoint_file
from mmdet_conddetr.engine import run_cli
from mmdet_conddetr.engine.config_checks import load_config
from mmdet_conddetr.engine.config_checks.runtime import (check_device,
                                                         check_output_file)
from mmdet_conddetr.errors import ConfigCheckError


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('inputs', help='an image file or a folder of images')
    parser.add_argument('model', help='config file')
    parser.add_argument('--weights', required=True, help='checkpoint file')
    parser.add_argument('--out-dir', default='outputs')
    parser.add_argument('--pred-score-thr', type=float, default=0.3)
    parser.add_argument('--device', default='cpu')
    return parser.parse_args()


def check_args(args) -> None:
    """Everything that can be wrong with the command line, before the model
    is built: one message naming the problem and the fix."""
    check_device(args.device)
    if not osp.exists(args.inputs):
        raise ConfigCheckError(f'{args.inputs}: no such image or folder.')
    load_config(args.model)
    read_checkpoint_file(args.weights)
    check_output_file(osp.join(args.out_dir, 'vis', 'probe'), '--out-dir')


def main():
    args = parse_args()
    check_args(args)
    inferencer = DetInferencer(
        model=args.model,
        weights=args.weights,
        device=args.device,
        scope='mmdet_conddetr',
        show_progress=True)
    inferencer(
        args.inputs,
        out_dir=args.out_dir,
        pred_score_thr=args.pred_score_thr,
        no_save_pred=False)
    print(f'Drawings written to {args.out_dir}/vis, predictions to '
          f'{args.out_dir}/preds')


if __name__ == '__main__':
    run_cli(main)
