"""Command line of ``tools/analysis_tools/benchmark.py``.

    python tools/analysis_tools/benchmark.py --out work_dirs/bench.json
    python tools/analysis_tools/benchmark.py --scale --out work_dirs/scale.json
    python tools/analysis_tools/benchmark.py --quick            # seconds, tiny
    python tools/analysis_tools/benchmark.py --device cuda --amp
    python tools/analysis_tools/benchmark.py --ort --out work_dirs/ort.json

See :mod:`mmdet_conddetr.benchmark` for what each mode measures.
"""
import argparse
import json
import os
import os.path as osp
from typing import Any, Dict, List, Optional

import torch

from .settings import MMDET_CONFIG, SETTINGS
from .timing import log


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Speed, memory and FLOPs of this package\'s Conditional '
        'DETR next to MMDetection 3.3\'s built-in ConditionalDETR.',
        epilog=__doc__.split('\n\n')[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--device', default='cpu', help='cpu or cuda[:N]')
    parser.add_argument(
        '--repeats',
        type=int,
        default=None,
        help='timed rounds per section (default 10; 3 with --quick; 5 with '
        '--scale)')
    parser.add_argument('--warmup',
                        type=int,
                        default=None,
                        help='untimed rounds first')
    parser.add_argument('--quick',
                        action='store_true',
                        help='tiny model and images (smoke test), seconds')
    parser.add_argument(
        '--amp',
        action='store_true',
        help='autocast (fp16 on CUDA, bf16 on CPU); the output check and '
        'the matching cost stay fp32')
    parser.add_argument(
        '--scale',
        action='store_true',
        help='our model alone: latency and memory vs image size and number '
        'of queries')
    parser.add_argument(
        '--ort',
        action='store_true',
        help='ONNX Runtime (our model exported) vs ours vs mmdet, batch 1 '
        'at 800x1216 and 512x512 (CPU; needs the deploy extra)')
    parser.add_argument('--no-memory',
                        action='store_true',
                        help='skip the peak-memory subprocesses')
    parser.add_argument(
        '--profile',
        action='store_true',
        help='add torch.profiler top-10 ops of each section to the JSON')
    parser.add_argument('--config', help='our config (default r50_50ep.py)')
    parser.add_argument('--mmdet-config',
                        help=f'mmdet config (default {MMDET_CONFIG})')
    parser.add_argument('--out', help='write the JSON record here')
    parser.add_argument('--memory-worker', help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _run(args: argparse.Namespace):
    """The record of the chosen mode and its table."""
    from .compare import run_compare
    from .report import format_compare, format_ort, format_scale
    from .scale import run_scale
    if args.ort:
        from .ort import run_ort
        result = run_ort(repeats=args.repeats,
                         warmup=args.warmup,
                         quick=args.quick,
                         config=args.config,
                         mmdet_config=args.mmdet_config)
        return result, format_ort(result)
    if args.scale:
        result = run_scale(args.device,
                           args.amp,
                           repeats=args.repeats or (2 if args.quick else 5),
                           warmup=1 if args.warmup is None else args.warmup,
                           memory=not args.no_memory,
                           quick=args.quick,
                           config=args.config)
        return result, format_scale(result)
    result = run_compare(SETTINGS['quick' if args.quick else 'full'],
                         args.device,
                         args.amp,
                         repeats=args.repeats,
                         warmup=args.warmup,
                         memory=not args.no_memory,
                         profile=args.profile,
                         config=args.config,
                         mmdet_config=args.mmdet_config)
    return result, format_compare(result)


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    """Run the benchmark, print its table, write ``--out``; returns the
    JSON record (with the table under ``table``)."""
    args = parse_args(argv)
    if args.memory_worker:
        from .memory import print_worker_result
        return print_worker_result(args.memory_worker)
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        raise SystemExit('--device cuda: CUDA is not available here.')
    if args.ort and args.device != 'cpu':
        raise SystemExit('--ort compares CPU inference; drop --device.')
    result, text = _run(args)
    print(text, flush=True)
    if result.get('profile'):
        from .profile import format_profile
        print(format_profile(result['profile']), flush=True)
    result['table'] = text
    if args.out:
        os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
        with open(args.out, 'w') as out:
            json.dump(result, out, indent=1)
        log(f'wrote {args.out}')
    return result
