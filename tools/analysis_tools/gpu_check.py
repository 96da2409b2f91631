"""One command for the first GPU: benchmark and fp16 AMP stability, one JSON.

    python tools/analysis_tools/gpu_check.py [--out work_dirs/gpu_check.json]
        [--steps 8] [-- EXTRA BENCHMARK ARGS]

1. ``tools/analysis_tools/benchmark.py --device cuda --amp`` (its CLI, in a
   subprocess; arguments after ``--`` are passed on): step time, peak memory
   and the ratio to MMDetection's built-in ConditionalDETR.
2. AMP stability: a few training steps of the R50 config (random weights,
   no download; two random images with boxes) under float16 autocast with
   mmengine's ``AmpOptimWrapper`` (dynamic ``GradScaler``), as ``--amp``
   trains. It passes when every loss is finite and no step after the first
   ``--calibration`` steps is skipped (the scaler starts at 2^16 and may
   skip a few steps while it finds its scale; skipping every step is the
   stall this looks for).

Both results go into one JSON. The exit status is 0 only if both passed.
Without CUDA it stops at once with status 2.
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import tempfile
from typing import Any, Dict, List

import torch

# mmdet/mmengine/the package are imported where used, so that a machine
# without CUDA gets its answer at once.
HERE = osp.dirname(osp.abspath(__file__))
CONFIG = osp.join(HERE, '..', '..', 'configs', 'conditional_detr',
                  'r50_50ep.py')
NO_CUDA = ('gpu_check: CUDA is not available here (torch {}, '
           'torch.cuda.is_available() is False). Run it on a machine with an '
           'NVIDIA GPU and a CUDA build of torch.')


def run_benchmark(extra: List[str]) -> Dict[str, Any]:
    """``benchmark.py --device cuda --amp`` through its CLI; its JSON
    record, with the exit status."""
    with tempfile.TemporaryDirectory() as tmp:
        out = osp.join(tmp, 'bench.json')
        command = [
            sys.executable,
            osp.join(HERE, 'benchmark.py'), '--device', 'cuda', '--amp',
            '--out', out, *extra
        ]
        print('gpu_check:', ' '.join(command), flush=True)
        status = subprocess.call(command)
        record = {}
        if osp.exists(out):
            with open(out) as f:
                record = json.load(f)
    return dict(command=command[1:], returncode=status, result=record)


def training_batch(model, sizes, device, seed=0):
    """Random images of ``sizes`` (h, w) with three random boxes each,
    through the model's data preprocessor."""
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    generator = torch.Generator().manual_seed(seed)
    images, samples = [], []
    for height, width in sizes:
        images.append(torch.randint(0, 256, (3, height, width),
                                    generator=generator, dtype=torch.uint8))
        corners = torch.rand(3, 2, 2, generator=generator) * torch.tensor(
            [width, height])
        boxes = torch.cat([corners.min(1).values, corners.max(1).values + 8],
                          -1)
        sample = DetDataSample(metainfo=dict(img_shape=(height, width),
                                             ori_shape=(height, width),
                                             scale_factor=(1.0, 1.0)))
        labels = torch.randint(0, model.bbox_head.num_classes, (3, ),
                               generator=generator)
        sample.gt_instances = InstanceData(bboxes=boxes, labels=labels)
        samples.append(sample)
    batch = model.data_preprocessor(dict(inputs=images, data_samples=samples),
                                    True)
    return dict(inputs=batch['inputs'].to(device),
                data_samples=[s.to(device) for s in batch['data_samples']])


def amp_stability(config: str, device: str, steps: int, calibration: int,
                  sizes=((640, 853), (576, 768)),
                  overrides=None) -> Dict[str, Any]:
    """Train ``steps`` steps under ``--amp``'s optimizer wrapper.

    Returns:
        dict: per-step ``loss``, ``finite``, ``scale`` (after the step,
        None without a loss scaler) and ``skipped``, and ``passed``.
    """
    from mmengine.config import Config
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import DefaultScope

    from mmdet_conddetr.engine import enable_amp
    from mmdet_conddetr.registry import MODELS
    cfg = Config.fromfile(config)
    cfg.model.backbone.init_cfg = None
    cfg.merge_from_dict(overrides or {})
    enable_amp(cfg)
    with DefaultScope.overwrite_default_scope('mmdet_conddetr'):
        model = MODELS.build(cfg.model)
        model.init_weights()
        model.to(device).train()
        wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    scaler = getattr(wrapper, 'loss_scaler', None)
    batch = training_batch(model, sizes, device)
    records = []
    for _ in range(steps):
        before = scaler.get_scale() if scaler is not None else None
        with wrapper.optim_context(model):
            losses = model(**batch, mode='loss')
        loss, _ = model.parse_losses(losses)
        wrapper.update_params(loss)
        after = scaler.get_scale() if scaler is not None else None
        value = loss.item()
        records.append(
            dict(loss=value, finite=bool(torch.isfinite(loss)), scale=after,
                 skipped=scaler is not None and after < before))
    late_skips = [r['skipped'] for r in records[calibration:]]
    return dict(config=config, device=device, dtype=str(wrapper.cast_dtype)
                if hasattr(wrapper, 'cast_dtype') else None,
                optim_wrapper=type(wrapper).__name__, steps=records,
                skipped=sum(r['skipped'] for r in records),
                passed=all(r['finite'] for r in records)
                and not any(late_skips))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', default='work_dirs/gpu_check.json')
    parser.add_argument('--config', default=CONFIG)
    parser.add_argument('--steps', type=int, default=8)
    parser.add_argument('--calibration', type=int, default=3,
                        help='first steps the loss scaler may skip')
    parser.add_argument('--skip-benchmark', action='store_true')
    args, extra = parser.parse_known_args(argv)
    return args, [arg for arg in extra if arg != '--']


def main(argv=None) -> int:
    args, extra = parse_args(argv)
    if not torch.cuda.is_available():
        print(NO_CUDA.format(torch.__version__), file=sys.stderr)
        return 2
    record: Dict[str, Any] = dict(
        torch=torch.__version__,
        gpu=torch.cuda.get_device_name(),
        capability=list(torch.cuda.get_device_capability()))
    if not args.skip_benchmark:
        record['benchmark'] = run_benchmark(extra)
    record['amp_stability'] = amp_stability(args.config, 'cuda', args.steps,
                                            args.calibration)
    record['passed'] = record['amp_stability']['passed'] and (
        args.skip_benchmark or record['benchmark']['returncode'] == 0)
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(record, f, indent=1)
    print(f'gpu_check: passed={record["passed"]}, wrote {args.out}')
    return 0 if record['passed'] else 1


if __name__ == '__main__':
    sys.exit(main())
