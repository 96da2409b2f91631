"""Peak memory of one model and phase, each in a fresh interpreter so that
the peaks of different models and phases do not mix.

``python -m mmdet_conddetr.benchmark.memory SPEC_JSON`` runs
:func:`memory_worker` and prints its result on a line starting with
:data:`RESULT_PREFIX`; :func:`measure_memory` starts that and parses it.
"""
import json
import resource
import subprocess
import sys
from typing import Any, Dict, Optional

import torch

from .build import build_model, make_data
from .steps import build_optim_wrapper, inference_fn, train_fn
from .timing import sync

RESULT_PREFIX = 'BENCHMARK_MEMORY_RESULT '


def _rss_bytes(field: str = 'VmRSS') -> Optional[int]:
    try:
        with open('/proc/self/status') as status:
            for line in status:
                if line.startswith(field + ':'):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's high-water mark (Linux), so the peak covers the
    measured phase only; False where that is not possible."""
    try:
        with open('/proc/self/clear_refs', 'w') as clear:
            clear.write('5')
        return True
    except OSError:
        return False


def _phase_fn(model, spec: Dict[str, Any]):
    device, amp = spec['device'], spec['amp']
    if spec['phase'] == 'train':
        model.train()
        data = make_data(model,
                         spec['sizes'],
                         spec['boxes'],
                         training=True,
                         seed=1)
        return train_fn(model, build_optim_wrapper(model, device, amp), data,
                        device, amp)
    model.eval()
    return inference_fn(model, make_data(model, spec['sizes'], seed=1),
                        device, amp)


def memory_worker(spec: Dict[str, Any]) -> Dict[str, Any]:
    """Build one model, run ``spec['phase']`` twice, report the peak RSS
    (and peak CUDA memory). Meant to run in its own process.

    Args:
        spec (dict): ``model`` ('ours'/'mmdet'), ``phase``
            ('inference'/'train'), ``arch``, ``device``, ``amp``,
            ``config`` (or None), ``sizes`` [(h, w)...], ``boxes`` per image.
    """
    device = spec['device']
    torch.manual_seed(0)
    model = build_model(spec['model'],
                        spec['arch'],
                        device,
                        spec.get('config'),
                        init=False)
    fn = _phase_fn(model, spec)
    before = _rss_bytes()
    peak_reset = _reset_peak_rss()
    if device.startswith('cuda'):
        torch.cuda.reset_peak_memory_stats()
    for _ in range(2):
        fn()
    sync(device)
    peak = _rss_bytes('VmHWM')
    if peak is None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    result = dict(rss_before=before,
                  peak_rss=peak,
                  peak_rss_covers_phase_only=peak_reset,
                  weights_bytes=sum(p.numel() * p.element_size()
                                    for p in model.parameters()))
    if device.startswith('cuda'):
        result['cuda_peak_allocated'] = torch.cuda.max_memory_allocated()
    return result


def measure_memory(spec: Dict[str, Any], timeout: float = 900) -> Dict:
    """``memory_worker(spec)`` in a fresh interpreter."""
    command = [
        sys.executable, '-m', 'mmdet_conddetr.benchmark.memory',
        json.dumps(spec)
    ]
    proc = subprocess.run(command,
                          capture_output=True,
                          text=True,
                          timeout=timeout)
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX):])
    raise RuntimeError(f'memory worker failed ({proc.returncode}): '
                       f'{proc.stderr[-2000:]}')


def print_worker_result(spec_json: str) -> Dict[str, Any]:
    """Run the worker on a JSON spec and print the result line."""
    result = memory_worker(json.loads(spec_json))
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return result


if __name__ == '__main__':
    print_worker_result(sys.argv[1])
