"""Detect objects in images and draw the boxes with class names.

    python tools/demo/image_demo.py IMG_OR_DIR CONFIG --weights CKPT \
        [--out-dir outputs] [--pred-score-thr 0.3] [--device cpu]

A thin front end of mmdet's ``DetInferencer`` in the ``mmdet_conddetr``
scope: it writes ``vis/<image>`` (the drawing) and ``preds/<image>.json``.
"""
import argparse

from mmdet.apis import DetInferencer

import mmdet_conddetr  # noqa: F401  (scope, safe checkpoint loading)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('inputs', help='an image file or a folder of images')
    parser.add_argument('model', help='config file')
    parser.add_argument('--weights', required=True, help='checkpoint file')
    parser.add_argument('--out-dir', default='outputs')
    parser.add_argument('--pred-score-thr', type=float, default=0.3)
    parser.add_argument('--device', default='cpu')
    return parser.parse_args()


def main():
    args = parse_args()
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
    main()
