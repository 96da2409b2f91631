"""Interleaved timing, its statistics and the load other processes put on
the machine while it ran.

Timings are interleaved (A B, then B A, ...) so that a slow period of a
shared machine hits every contender alike; warm-up rounds are dropped; each
contender gets the median and the spread (min-max, interquartile range) of
its rounds, and a pair the ratio of medians and the median of the per-round
ratios.
"""
import os
import statistics
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch

from .settings import MMDET, OURS


def sync(device: str) -> None:
    """Wait for queued CUDA work, so a timer stops after it."""
    if device.startswith('cuda'):
        torch.cuda.synchronize()


class CpuMonitor:
    """Share of the machine's CPUs used by *other* processes while active
    (Linux ``/proc/stat`` minus this process's own CPU time)."""

    def __init__(self):
        self.others_share: Optional[float] = None

    @staticmethod
    def _busy_seconds() -> Optional[float]:
        try:
            with open('/proc/stat') as stat:
                fields = [float(v) for v in stat.readline().split()[1:]]
        except OSError:
            return None
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
        return (sum(fields[:8]) - idle) / os.sysconf('SC_CLK_TCK')

    def __enter__(self):
        self._busy = self._busy_seconds()
        self._own = sum(os.times()[:2])
        self._wall = time.perf_counter()
        return self

    def __exit__(self, *exc):
        busy = self._busy_seconds()
        if busy is None or self._busy is None:
            return False
        wall = time.perf_counter() - self._wall
        own = sum(os.times()[:2]) - self._own
        others = (busy - self._busy) - own
        cpus = os.cpu_count() or 1
        self.others_share = round(
            min(max(others / max(wall * cpus, 1e-9), 0.0), 1.0), 3)
        return False


def time_interleaved(fns: Dict[str, Callable[[], Any]],
                     repeats: int,
                     warmup: int,
                     device: str = 'cpu') -> Dict[str, List[float]]:
    """Seconds per call of each function, interleaved A B / B A / ..."""
    names = list(fns)
    times: Dict[str, List[float]] = {name: [] for name in names}
    for round_index in range(warmup + repeats):
        order = names if round_index % 2 == 0 else names[::-1]
        for name in order:
            sync(device)
            start = time.perf_counter()
            fns[name]()
            sync(device)
            elapsed = time.perf_counter() - start
            if round_index >= warmup:
                times[name].append(elapsed)
    return times


def summarize(values: Sequence[float]) -> Dict[str, float]:
    """Median, min, max, quartiles, mean, count and the sorted values."""
    values = sorted(values)
    if len(values) >= 2:
        q1, _, q3 = statistics.quantiles(values, n=4, method='inclusive')
    else:
        q1 = q3 = values[0]
    return dict(median=statistics.median(values),
                min=values[0],
                max=values[-1],
                q1=q1,
                q3=q3,
                mean=statistics.fmean(values),
                n=len(values),
                values=list(values))


def ratio(baseline: Sequence[float], contender: Sequence[float]
          ) -> Dict[str, Any]:
    """Speed-up of ``contender`` over ``baseline`` (baseline time / its
    time): the ratio of the medians and the per-round ratios."""
    paired = [b / a for a, b in zip(contender, baseline)]
    return dict(speedup=statistics.median(baseline) /
                statistics.median(contender),
                speedup_paired=summarize(paired))


def compare_times(times: Dict[str, List[float]]) -> Dict[str, Any]:
    """Statistics of both and the speed-up of ours (mmdet time / ours)."""
    return {
        OURS: summarize(times[OURS]),
        MMDET: summarize(times[MMDET]),
        **ratio(times[MMDET], times[OURS]),
    }


def log(message: str) -> None:
    """A timestamped progress line."""
    print(f'[benchmark {time.strftime("%H:%M:%S")}] {message}', flush=True)
