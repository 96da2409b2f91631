"""Reading a config with errors that name the fix.

:func:`load_config` is ``Config.fromfile`` with clear errors for a missing
file (and the nearest existing config names), a ``_base_`` the installed
package lacks (``mmdet::...``), an unknown package scope and syntax errors.
"""
import difflib
import os
import os.path as osp
import re
from typing import List

from mmengine.config import Config

from mmdet_conddetr.errors import ConfigCheckError

__all__ = ['load_config']


def _nearest_files(path: str, limit: int = 3) -> List[str]:
    directory, base = osp.split(osp.abspath(path))
    candidates = []
    root = directory
    while root and not osp.isdir(root):
        root = osp.dirname(root)
    if root and root != '/':
        for dirpath, _, files in os.walk(root):
            if dirpath.count(os.sep) - root.count(os.sep) > 2:
                continue
            candidates += [
                osp.join(dirpath, f) for f in files if f.endswith('.py')
            ]
    names = {osp.basename(c): c for c in candidates}
    close = difflib.get_close_matches(base, list(names), n=limit, cutoff=0.6)
    return [osp.relpath(names[c]) for c in close]


def load_config(path: str) -> Config:
    """``Config.fromfile(path)`` with user-facing errors."""
    if not osp.isfile(path):
        near = _nearest_files(path)
        hint = (' Did you mean ' + ' or '.join(near) + '?') if near else (
            ' The configs of this package are under configs/conditional_detr/.')
        raise ConfigCheckError(f'config file not found: {path}.{hint}')
    try:
        return Config.fromfile(path)
    except FileNotFoundError as error:
        raise ConfigCheckError(_missing_base_message(path, error)) from error
    except TypeError as error:  # a dict over a non-dict value of a base
        if 'cannot inherit from base' not in str(error):
            raise
        raise ConfigCheckError(f'{path}: {error}') from error
    except SyntaxError as error:
        raise ConfigCheckError(
            f'{path} (or one of its _base_ files) is not valid Python: '
            f'{error.msg} at line {error.lineno}. Fix the syntax.') from error
    except AssertionError as error:
        match = re.search(r'does not support to load (\S+) config', str(error))
        if not match:
            raise
        raise ConfigCheckError(
            f'{path} (or one of its _base_ files) refers to '
            f'"{match.group(1)}::..." configs, but the package '
            f'{match.group(1)!r} is not installed. Install it or copy the '
            'base config next to yours and refer to it by a relative '
            'path.') from error


def _missing_base_message(path: str, error: FileNotFoundError) -> str:
    text = str(error)
    match = re.search(r'file "([^"]+)" does not exist', text) or \
        re.search(r"No such file or directory: '([^']+)'", text)
    missing = match.group(1) if match else text
    mim = re.search(r'[/\\]([^/\\]+)[/\\]\.mim[/\\]configs[/\\](.+)$', missing)
    if mim:
        package, relative = mim.group(1), mim.group(2)
        version = ''
        try:
            module = __import__(package)
            version = f' {getattr(module, "__version__", "")}'.rstrip()
        except ImportError:
            pass
        near = _nearest_files(missing)
        hint = (' Nearest existing: ' + ', '.join(
            f'{package}::' + n.split(f'.mim{os.sep}configs{os.sep}')[-1]
            for n in near) + '.') if near else ''
        return (f'{path} (or one of its _base_ files) inherits '
                f'"{package}::{relative}", which the installed {package}'
                f'{version} does not have.{hint} mmdet_conddetr is tested '
                'with mmdet 3.3.0 (pip install "mmdet==3.3.0"); or copy that '
                'base config next to yours and refer to it by a relative '
                'path.')
    return (f'{path} (or one of its _base_ files) refers to a file that '
            f'does not exist: {missing}. Fix the _base_ path (relative paths '
            'are relative to the config that names them).')

