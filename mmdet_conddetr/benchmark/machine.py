"""Where a benchmark ran: CPU, threads, library versions, git commit."""
import os
import os.path as osp
import platform
import subprocess
from typing import Any, Dict

import torch


def _cpu_name() -> str:
    try:
        with open('/proc/cpuinfo') as info:
            for line in info:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _git_commit():
    """Short commit of the checkout holding this package, or None."""
    try:
        return subprocess.run(['git', 'rev-parse', '--short', 'HEAD'],
                              cwd=osp.dirname(osp.abspath(__file__)),
                              capture_output=True,
                              text=True,
                              timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def machine_info(device: str) -> Dict[str, Any]:
    """The facts a reader needs to compare two benchmark records."""
    info = dict(
        device=device,
        cpu=_cpu_name(),
        cpu_count=os.cpu_count(),
        torch_threads=torch.get_num_threads(),
        torch=torch.__version__,
        python=platform.python_version(),
        load_average=os.getloadavg() if hasattr(os, 'getloadavg') else None)
    try:
        import mmdet
        import mmengine
        info.update(mmdet=mmdet.__version__, mmengine=mmengine.__version__)
    except ImportError:
        pass
    if device.startswith('cuda'):
        info['gpu'] = torch.cuda.get_device_name(device)
    info['git_commit'] = _git_commit()
    return info
