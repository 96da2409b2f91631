"""Our model alone: latency, FLOPs and peak memory against the image size
and the number of queries (``benchmark.py --scale``)."""
from typing import Any, Dict, List, Optional, Tuple

from .build import build_model, make_data
from .flops import count_model_flops
from .machine import machine_info
from .memory import measure_memory
from .settings import (OURS, OURS_DC5_CONFIG, SCALE_QUERIES, SCALE_SIZES,
                       SETTINGS)
from .steps import inference_fn
from .timing import CpuMonitor, log, summarize, time_interleaved


def _cases(base: Dict[str, int], quick: bool,
           config: Optional[str]) -> List[Tuple]:
    """(size, queries, config, backbone name): every size at the default
    queries, every other query count at the middle size, and DC5."""
    sizes = [(64, 64), (96, 128)] if quick else SCALE_SIZES
    queries = [10, 20] if quick else SCALE_QUERIES
    middle = sizes[1]
    cases = [(size, base['num_queries'], config, 'R50') for size in sizes]
    cases += [(middle, q, config, 'R50') for q in queries
              if q != base['num_queries']]
    if not quick:
        cases.append((middle, base['num_queries'], OURS_DC5_CONFIG, 'R50-DC5'))
    return cases


def _row(model, size, num_queries, backbone, run) -> Dict[str, Any]:
    data = make_data(model, [size], seed=1)
    fn = inference_fn(model, data, run['device'], run['amp'])
    with CpuMonitor() as monitor:
        times = time_interleaved({OURS: fn}, run['repeats'], run['warmup'],
                                 run['device'])[OURS]
    stride = 16 if backbone.endswith('DC5') else 32
    tokens = -(-size[0] // stride) * -(-size[1] // stride)
    flops = count_model_flops(inference_fn(model, data, run['device'], False))
    return dict(
        backbone=backbone,
        size=list(size),
        num_queries=num_queries,
        tokens=tokens,
        latency=summarize(times),
        others_cpu_share=monitor.others_share,
        gflops=flops['total'] / 1e9,
        attention_gflops=flops['attention'] / 1e9,
        # What an implementation that materialises the encoder's softmax
        # (mmdet's nn.MultiheadAttention) allocates per layer.
        encoder_attention_matrix_mib=8 * tokens**2 * 4 / 2**20)


def run_scale(device: str = 'cpu',
              amp: bool = False,
              repeats: int = 5,
              warmup: int = 1,
              memory: bool = True,
              quick: bool = False,
              config: Optional[str] = None) -> Dict[str, Any]:
    """Latency and peak memory of our model vs image size and queries."""
    base = dict(SETTINGS['quick' if quick else 'full']['arch'])
    run = dict(device=device, amp=amp, repeats=repeats, warmup=warmup)
    rows = []
    for size, num_queries, cfg_path, backbone in _cases(base, quick, config):
        arch = dict(base, num_queries=num_queries)
        log(f'scale: {backbone} {size[0]}x{size[1]}, {num_queries} queries')
        model = build_model(OURS, arch, device, cfg_path).eval()
        row = _row(model, size, num_queries, backbone, run)
        del model
        if memory:
            row['memory'] = measure_memory(
                dict(model=OURS,
                     phase='inference',
                     arch=arch,
                     device=device,
                     amp=amp,
                     config=cfg_path,
                     sizes=[size],
                     boxes=[1]))
        rows.append(row)
    return dict(kind='scale', machine=machine_info(device), amp=amp, rows=rows)
