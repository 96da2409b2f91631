"""torch.profiler's top operators of one call of a timed section."""
from typing import Any, Callable, Dict, List

from .timing import sync


def profile_top(fn: Callable[[], Any],
                device: str,
                rows: int = 10) -> List[Dict[str, Any]]:
    """The ``rows`` ops with the most self time in one call of ``fn``: name,
    self milliseconds, share of the total self time and call count."""
    from torch.profiler import ProfilerActivity, profile
    activities = [ProfilerActivity.CPU]
    if device.startswith('cuda'):
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        fn()
        sync(device)
    attr = 'self_device_time_total' if device.startswith(
        'cuda') else 'self_cpu_time_total'
    events = sorted(prof.key_averages(),
                    key=lambda e: getattr(e, attr),
                    reverse=True)
    total = sum(getattr(e, attr) for e in events) or 1
    return [
        dict(name=e.key,
             self_ms=round(getattr(e, attr) / 1e3, 2),
             self_pct=round(100 * getattr(e, attr) / total, 1),
             calls=e.count) for e in events[:rows]
    ]


def format_profile(profiles: Dict[str, Dict[str, list]]) -> str:
    """The profiles as text, one block per model and section."""
    lines = []
    for key, entry in profiles.items():
        for section, rows in entry.items():
            lines.append(f'\nprofile {key} {section}:')
            lines += [
                f'  {row["self_pct"]:5.1f}% {row["self_ms"]:9.1f} ms'
                f' {row["calls"]:5d}x {row["name"]}' for row in rows
            ]
    return '\n'.join(lines)
