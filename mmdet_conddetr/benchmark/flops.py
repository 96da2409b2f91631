"""FLOPs of the timed sections and how close they run to the machine's
dense-matmul ceiling.

The counting itself is :func:`mmdet_conddetr.utils.flops.count_flops`
(attention matmuls included); this module adds the analytic attention count,
the measured matmul peak and the achieved GFLOP/s of each section.
"""
import statistics
import time
from typing import Any, Callable, Dict

import torch

from .settings import MMDET, OURS
from .timing import sync


def matmul_gflops(device: str,
                  dtype=torch.float32,
                  size: int = 2048,
                  repeats: int = 5) -> Dict[str, Any]:
    """Dense matmul throughput of this machine (the physical ceiling)."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator).to(device, dtype)
    b = torch.randn(size, size, generator=generator).to(device, dtype)
    times = []
    for index in range(repeats + 2):
        sync(device)
        start = time.perf_counter()
        torch.mm(a, b)
        sync(device)
        if index >= 2:
            times.append(time.perf_counter() - start)
    flops = 2 * size**3
    return dict(size=size,
                dtype=str(dtype).replace('torch.', ''),
                gflops_median=flops / statistics.median(times) / 1e9,
                gflops_best=flops / min(times) / 1e9)


def analytic_attention_flops(arch: Dict[str, int], batch: int,
                             tokens: int) -> int:
    """Attention-core FLOPs (QK^T and AV) of one forward: encoder
    ``4 B N^2 d``, decoder self ``4 B Q^2 d``, conditional cross
    ``2 B Q N (2d) + 2 B Q N d`` (queries/keys are 2d wide)."""
    d, q = 256, arch['num_queries']
    encoder = arch['enc_layers'] * 4 * batch * tokens**2 * d
    decoder = arch['dec_layers'] * (4 * batch * q**2 * d +
                                    6 * batch * q * tokens * d)
    return encoder + decoder


def count_model_flops(fn: Callable[[], Any]) -> Dict[str, Any]:
    """Total and attention FLOPs of one call, and the count per op."""
    from mmdet_conddetr.utils.flops import count_flops
    report = count_flops(fn)
    return dict(total=report.total,
                attention=report.attention,
                by_op=dict(sorted(report.by_op.items(),
                                  key=lambda kv: -kv[1])))


def achieved(result: Dict[str, Any]) -> Dict[str, Any]:
    """GFLOP/s of every timed section and its share of the matmul peak."""
    peak = result.get('matmul_peak_amp',
                      result['matmul_peak'])['gflops_median']
    flops = result['flops']
    out = {}
    for section in ('inference', 'transformer', 'train'):
        timing = result['sections'][section]
        out[section] = {}
        for key in (OURS, MMDET):
            # Training FLOPs are counted on ours only: same arithmetic.
            source = flops[key].get(section) or flops[OURS][section]
            gflops = source['total'] / timing[key]['median'] / 1e9
            out[section][key] = dict(gflops_per_s=gflops,
                                     fraction_of_matmul_peak=gflops / peak)
    return out
