"""Detect objects with an exported Conditional DETR and ONNX Runtime alone.

    python tools/deployment/onnx_inference.py model.onnx IMAGE... \\
        --out-dir DIR [--score-thr 0.3] [--threads N]

For each image, writes DIR/<name> with the boxes and class names drawn and
DIR/<stem>.json with every detection (scores, labels, class names, boxes in
original-image pixels). The pre-processing is the config's test pipeline,
read from the model's metadata.

This process imports onnxruntime, numpy and PIL, never torch, mmcv or mmdet:
the runtime module of the package (mmdet_conddetr/deploy/runtime.py) is
loaded from its file, because importing it through the package would run
the package's ``__init__`` (torch, mmdet).
"""
import argparse
import importlib.util
import json
import os
import os.path as osp
import sys


def load_runtime():
    """mmdet_conddetr/deploy/runtime.py as a top-level module, found without
    importing mmdet_conddetr (``find_spec`` of a top-level package only
    locates it)."""
    spec = importlib.util.find_spec('mmdet_conddetr')
    if spec is None or not spec.submodule_search_locations:
        sys.exit('onnx_inference: mmdet_conddetr is not installed '
                 '(pip install -e .[deploy]).')
    path = osp.join(list(spec.submodule_search_locations)[0], 'deploy',
                    'runtime.py')
    module_spec = importlib.util.spec_from_file_location(
        'mmdet_conddetr_ort_runtime', path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('model', help='the .onnx file (export_onnx.py)')
    parser.add_argument('images', nargs='+', help='image files')
    parser.add_argument('--out-dir', required=True, help='output folder')
    parser.add_argument('--score-thr',
                        type=float,
                        default=0.3,
                        help='draw detections scoring at least this')
    parser.add_argument('--threads',
                        type=int,
                        default=None,
                        help='ONNX Runtime intra-op threads')
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    runtime = load_runtime()
    try:
        return run(runtime, args)
    except (OSError, ValueError) as error:  # missing/unreadable files
        sys.exit(f'onnx_inference: {error}')


def run(runtime, args) -> dict:
    """Detect, draw and save every image; returns the JSON records."""
    detector = runtime.OnnxDetector(args.model, threads=args.threads)
    os.makedirs(args.out_dir, exist_ok=True)
    results = {}
    for path in args.images:
        image = detector.load_image(path)
        detections = detector(image)
        name = osp.basename(path)
        runtime.draw_detections(image, detections, args.score_thr).save(
            osp.join(args.out_dir, name))
        record = dict(image=path,
                      scores=detections['scores'].tolist(),
                      labels=detections['labels'].tolist(),
                      label_names=detections['label_names'],
                      boxes=detections['boxes'].tolist())
        with open(osp.join(args.out_dir,
                           osp.splitext(name)[0] + '.json'), 'w') as f:
            json.dump(record, f)
        results[path] = record
        kept = sum(s >= args.score_thr for s in record['scores'])
        print(f'{path}: {kept} detections >= {args.score_thr}')
    return results


if __name__ == '__main__':
    main()
