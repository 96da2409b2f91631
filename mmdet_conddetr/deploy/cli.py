"""Command line of ``tools/deployment/export_onnx.py``: export a
Conditional DETR config + checkpoint to ONNX.

    python tools/deployment/export_onnx.py CONFIG CHECKPOINT --out model.onnx
        [--opset N] [--dynamic] [--raw] [--cfg-options KEY=VALUE ...]

The graph takes a normalised ``image`` [B, 3, H, W] (any H and W from 33 px;
B = 1, or any with ``--dynamic``) and returns ``scores`` [B, K], ``labels``
[B, K] and ``boxes`` [B, K, 4] (xyxy, input pixels), the top-K = 100 as
``predict``; ``--raw`` returns every decoder layer's ``all_logits`` and
``all_boxes`` instead. The checkpoint may be of any layout the package reads
(ours, official, detrex, Hugging Face, mmdet), converted while loading;
``none`` exports the random initialisation. Classes, pre-processing and the
package version go into the file's metadata
(``tools/deployment/onnx_inference.py`` reads them).
"""
import argparse
import json
import sys
import time

from mmengine.config import DictAction

from mmdet_conddetr.errors import UserFacingError
from .export import export_onnx
from .loading import load_detector
from .metadata import build_metadata


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Export a Conditional DETR config + checkpoint to ONNX.',
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split('\n\n', 2)[2].rstrip())
    parser.add_argument('config', help='config file or mmdet_conddetr:: name')
    parser.add_argument('checkpoint',
                        help="checkpoint of any layout, or 'none' for the "
                        'random initialisation')
    parser.add_argument('--out', required=True, help='the .onnx file')
    parser.add_argument('--opset',
                        type=int,
                        default=None,
                        help="ONNX opset, 18 or more (default: the "
                        "exporter's, 20 with torch 2.13)")
    parser.add_argument('--dynamic',
                        action='store_true',
                        help='dynamic batch size too (height and width are '
                        'always dynamic)')
    parser.add_argument('--raw',
                        action='store_true',
                        help='every layer\'s logits and boxes instead of '
                        'the top-100 detections')
    parser.add_argument('--cfg-options',
                        nargs='+',
                        action=DictAction,
                        help='override config settings, key=value')
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    """Export as the command line says; prints and returns the export's
    path, size in bytes, opset, inputs, outputs and seconds."""
    args = parse_args(argv)
    checkpoint = None if args.checkpoint.lower() == 'none' else args.checkpoint
    started = time.perf_counter()
    try:
        model, cfg = load_detector(args.config, checkpoint, args.cfg_options)
        metadata = build_metadata(cfg,
                                  model.bbox_head.num_classes,
                                  raw=args.raw,
                                  opset=args.opset,
                                  outputs=[],
                                  config_name=args.config)
        info = export_onnx(model,
                           args.out,
                           metadata,
                           opset=args.opset,
                           dynamic_batch=args.dynamic,
                           raw=args.raw)
    except UserFacingError as error:
        sys.exit(f'export_onnx: {error}')
    info['seconds'] = round(time.perf_counter() - started, 1)
    print(json.dumps(info))
    return info

