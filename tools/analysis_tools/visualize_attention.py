"""Draw the conditional cross-attention maps of the top detections (Fig. 1).

    python tools/analysis_tools/visualize_attention.py CONFIG CHECKPOINT IMG \
        [--out attention.png] [--num-detections 3] [--device cpu]
"""
import argparse
import os.path as osp

import mmcv
from mmdet.apis import init_detector

import mmdet_conddetr  # noqa: F401  (scope, safe checkpoint loading)
from mmdet_conddetr.checkpoint import read_checkpoint_file
from mmdet_conddetr.engine import run_cli
from mmdet_conddetr.engine.config_checks import load_config
from mmdet_conddetr.engine.config_checks.runtime import (check_device,
                                                         check_output_file)
from mmdet_conddetr.visualization import (collect_attention_maps,
                                          draw_attention_maps)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='model config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('image', help='image file')
    parser.add_argument('--out', default='attention.png', help='output PNG')
    parser.add_argument('--num-detections', type=int, default=3)
    parser.add_argument('--device', default='cpu')
    return parser.parse_args()


def main():
    args = parse_args()
    if not osp.isfile(args.image):
        raise SystemExit(f'Image not found: {args.image}')
    # wrong device, config, checkpoint or output folder: one line, early
    check_device(args.device)
    load_config(args.config)
    read_checkpoint_file(args.checkpoint)
    check_output_file(args.out, '--out')
    model = init_detector(args.config, args.checkpoint, device=args.device)
    if not hasattr(model, 'decoder') or not hasattr(
            model.decoder.layers[-1], 'cross_attn'):
        raise SystemExit(
            f'{args.config} is not a Conditional DETR model; the attention '
            'maps come from its conditional cross-attention.')
    detections = collect_attention_maps(model, args.image, args.num_detections)
    class_names = model.dataset_meta.get('classes', ())
    image = mmcv.imread(args.image, channel_order='rgb')
    draw_attention_maps(image, detections, class_names, args.out)
    print(f'Attention maps of {len(detections["scores"])} detections '
          f'written to {args.out}')


if __name__ == '__main__':
    run_cli(main)
