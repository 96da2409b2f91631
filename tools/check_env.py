"""Print the versions this package depends on and the fix for every known
incompatibility found. Exit status 1 when something needs fixing.

    python tools/check_env.py
"""
import importlib
import importlib.metadata
import platform
import sys
from typing import List, Optional, Tuple

from packaging.version import Version

MMDET_MMCV_RANGE = ('2.0.0rc4', '2.2.0')


def installed_version(distribution: str) -> Optional[str]:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def mmcv_problems(version: Optional[str]) -> List[str]:
    if version is None:
        return ['mmcv is not installed. CPU: `make install` builds it; GPU: '
                '`pip install -U openmim && mim install "mmcv>=2.0.0rc4,<2.2.0"`.']
    problems = []
    low, high = map(Version, MMDET_MMCV_RANGE)
    if not low <= Version(version) < high:
        problems.append(
            f'mmcv {version} is outside mmdet 3.3\'s range >={low},<{high} '
            '(mmdet refuses to import with mmcv 2.2). Install mmcv 2.1.0: '
            '`mim install "mmcv==2.1.0"` (GPU) or `make install` (CPU).')
    try:
        importlib.import_module('mmcv.ops')
    except Exception as error:  # noqa: BLE001 - any failure means no ops
        problems.append(
            f'mmcv has no compiled ops ({type(error).__name__}: {error}); '
            'mmcv-lite is not enough for `mmdet.models`. Uninstall mmcv-lite '
            'and install the full mmcv 2.1.0 (MMCV_WITH_OPS=1 when building).')
    return problems


def torch_load_problems(torch_version: Optional[str]) -> List[str]:
    """Round-trip an mmengine-style checkpoint through torch.load's default
    (weights_only=True on torch >= 2.6)."""
    if torch_version is None:
        return []
    try:
        import io

        import numpy as np
        import torch
        from mmengine.logging import HistoryBuffer

        import mmdet_conddetr  # noqa: F401  registers the safe globals
        buffer = io.BytesIO()
        torch.save({'meta': {'buffer': HistoryBuffer([1.0], [1]),
                             'score': np.float64(0.5)}}, buffer)
        buffer.seek(0)
        torch.load(buffer)
    except Exception as error:  # noqa: BLE001 - report whatever broke
        return [
            f'torch {torch_version} cannot load an mmengine checkpoint '
            f'({type(error).__name__}: {str(error).splitlines()[0]}). Import '
            'mmdet_conddetr before loading (tools/*.py do), which allow-lists '
            "mmengine's checkpoint types for weights_only loading."
        ]
    return []


def collect() -> Tuple[List[Tuple[str, str]], List[str]]:
    """Rows of (component, version/status) and the problems found."""
    versions = {
        name: installed_version(name)
        for name in ('torch', 'mmengine', 'mmcv', 'mmcv-lite', 'mmdet',
                     'mmdet_conddetr', 'pycocotools', 'scipy', 'numpy',
                     'setuptools')
    }
    rows = [('python', sys.version.split()[0]), ('platform', platform.platform())]
    rows += [(name, version or 'not installed')
             for name, version in versions.items()]
    problems = []
    for name in ('torch', 'mmengine', 'mmdet', 'pycocotools', 'scipy'):
        if versions[name] is None:
            problems.append(f'{name} is not installed: run `make install` '
                            '(or `pip install -e .`).')
    if versions['mmcv-lite'] is not None:
        problems.append('mmcv-lite is installed; mmdet.models needs the full '
                        'mmcv with compiled ops: `pip uninstall mmcv-lite`.')
    problems += mmcv_problems(versions['mmcv'])
    if versions['setuptools'] and Version(versions['setuptools']) >= Version('82'):
        problems.append('setuptools >= 82 removed pkg_resources, which '
                        'mmengine 0.10 imports: `pip install "setuptools<82"`.')
    try:
        import torch
        cuda = (f'yes ({torch.cuda.get_device_name(0)})'
                if torch.cuda.is_available() else 'no (CPU only)')
    except ImportError:
        cuda = 'unknown (torch missing)'
    rows.append(('CUDA available', cuda))
    problems += torch_load_problems(versions['torch'])
    return rows, problems


def main() -> int:
    rows, problems = collect()
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f'{name:<{width}}  {value}')
    if not problems:
        print('\nNo known incompatibility found.')
        return 0
    print('\nProblems and fixes:')
    for problem in problems:
        print(f'  - {problem}')
    return 1


if __name__ == '__main__':
    sys.exit(main())
