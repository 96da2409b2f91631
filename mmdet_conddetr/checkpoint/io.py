"""Reading checkpoint files of every supported layout (writing: :mod:`.save`).

Files are read with ``torch.load(weights_only=True)``: only tensors, plain
containers and allow-listed types are rebuilt. Besides mmengine's types
(:mod:`mmdet_conddetr.utils.safe_load`), the official repository's files
need ``argparse.Namespace`` (its ``main.py`` saves the command line under
``'args'``); :func:`allow_foreign_checkpoint_types` allow-lists it. A file
that needs anything else is refused with :class:`UnsafeCheckpointError`
unless the caller explicitly trusts it (``unsafe_load=True``).

Hugging Face ``.safetensors`` files are read with ``safetensors``.
"""
import importlib.util
import os.path as osp
import pickle
import re
import struct
import zipfile
from typing import Collection, Optional

import torch

from .convert import ConversionResult, convert
from .detect import extract_state_dict
from ..errors import CheckpointFileError, UnsafeCheckpointError
from ..utils.safe_load import allow_checkpoint_types

__all__ = [
    'allow_foreign_checkpoint_types', 'read_checkpoint_file',
    'load_foreign_checkpoint'
]

_ZIP_MAGIC = b'PK\x03\x04'
_PICKLE_PROTOCOLS = tuple(bytes([0x80, p]) for p in range(2, 6))

def allow_foreign_checkpoint_types() -> bool:
    """Allow ``argparse.Namespace`` in ``torch.load(weights_only=True)``.

    Needed to read the official repository's checkpoints, with this package's
    tools and through mmengine's loader (``load_from``). The one allow-list
    of the package is :mod:`mmdet_conddetr.utils.safe_load` (importing the
    package registers it); this name stays for callers of the checkpoint
    API.

    Returns:
        bool: False on torch without ``add_safe_globals`` (< 2.4).
    """
    return allow_checkpoint_types()


def _describe_bytes(head: bytes) -> str:
    text = head.lstrip().lower()
    if text.startswith((b'<!doctype html', b'<html', b'<?xml', b'<head')):
        return ('an HTML/XML page (a download link that returned a web page '
                'instead of the file?)')
    if text.startswith(b'{') or text.startswith(b'['):
        return 'a JSON text file'
    if head.startswith(b'version https://git-lfs'):
        return 'a Git LFS pointer, not the file itself'
    try:
        head.decode('utf-8')
        return 'a text file'
    except UnicodeDecodeError:
        return f'a binary file starting with {head[:8]!r}'


def _looks_like_safetensors(path: str, head: bytes) -> bool:
    if path.endswith('.safetensors'):
        return True
    if len(head) < 9:
        return False
    size = struct.unpack('<Q', head[:8])[0]
    return 0 < size < 100_000_000 and head[8:9] == b'{'


def _read_safetensors(path: str):
    try:
        from safetensors.torch import load_file
    except ImportError as error:  # pragma: no cover - transformers needs it
        raise CheckpointFileError(
            f'{path} is a safetensors file; install safetensors to read it'
        ) from error
    try:
        return load_file(path, device='cpu')
    except Exception as error:  # SafetensorError and OSError alike
        raise CheckpointFileError(
            f'{path} cannot be read as a safetensors file, it is probably '
            f'truncated or corrupt ({type(error).__name__}: {error})'
        ) from error


def _unknown_global(message: str) -> Optional[str]:
    """The global named in a weights_only refusal if its top-level module
    cannot be found (typical of a truncated legacy-format file); None
    otherwise. Nothing is imported."""
    match = re.search(r'Unsupported global: GLOBAL (\S+)', message)
    if not match:
        return None
    name = match.group(1)
    top = name.split('.')[0]
    try:
        found = bool(top) and importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):
        found = False
    return None if found else name


def _refused(error: Exception) -> str:
    """The 'Unsupported global: ...' part of a weights_only refusal."""
    match = re.search(r'Unsupported global: GLOBAL \S+', str(error))
    return match.group(0) if match else str(error).strip().splitlines()[0]


def read_checkpoint_file(path: str, unsafe_load: bool = False):
    """Load a checkpoint file (``.pth``/``.bin``/``.pkl``/``.safetensors``).

    Args:
        path: Local file.
        unsafe_load: Fall back to ``weights_only=False`` (full unpickling,
            which can run code from the file). Only for files you trust.

    Raises:
        CheckpointFileError: missing, empty, truncated, corrupt or not a
            checkpoint at all (the message says which).
        UnsafeCheckpointError: the file needs types ``weights_only`` refuses
            and ``unsafe_load`` is False.
    """
    allow_foreign_checkpoint_types()
    if not osp.isfile(path):
        raise CheckpointFileError(f'checkpoint file not found: {path}')
    size = osp.getsize(path)
    if size == 0:
        raise CheckpointFileError(f'{path} is empty (0 bytes)')
    with open(path, 'rb') as f:
        head = f.read(64)
    if _looks_like_safetensors(path, head):
        return _read_safetensors(path)
    is_zip = head.startswith(_ZIP_MAGIC)
    if is_zip and not zipfile.is_zipfile(path):
        raise CheckpointFileError(
            f'{path} is truncated: it starts as a PyTorch zip checkpoint but '
            f'its end (the zip directory) is missing ({size} bytes read). '
            'Download it again.')
    if not is_zip and not head.startswith(_PICKLE_PROTOCOLS):
        raise CheckpointFileError(
            f'{path} is not a PyTorch checkpoint: it is '
            f'{_describe_bytes(head)}.')
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as error:
        message = str(error).lower()
        if 'unsupported global' not in message and \
                'not an allowed global' not in message:
            raise CheckpointFileError(
                f'{path} is corrupt or not a PyTorch checkpoint '
                f'({error})') from error
        missing = _unknown_global(str(error))
        if missing:
            raise CheckpointFileError(
                f'{path} cannot be read: it refers to the Python name '
                f'{missing!r}, whose module does not exist here. The file is '
                'truncated or corrupt, or needs a package that is not '
                'installed.') from error
        if not unsafe_load:
            raise UnsafeCheckpointError(
                f'{path} holds Python objects that torch.load(weights_only='
                'True) refuses to rebuild. If you trust the file, convert it '
                'with tools/model_converters/convert_checkpoint.py '
                '--unsafe-load (full unpickling can run code from the file); '
                f'the converted file loads safely. ({_refused(error)})'
            ) from error
    except (EOFError, RuntimeError, OSError, ValueError) as error:
        raise CheckpointFileError(
            f'{path} cannot be read, it is probably truncated or corrupt '
            f'({type(error).__name__}: {error})') from error
    try:
        return torch.load(path, map_location='cpu', weights_only=False)
    except Exception as error:
        raise CheckpointFileError(
            f'{path} cannot be read ({type(error).__name__}: {error})'
        ) from error


def load_foreign_checkpoint(path: str,
                            source: str = 'auto',
                            num_classes: Optional[int] = 80,
                            target_keys: Optional[Collection[str]] = None,
                            unsafe_load: bool = False) -> ConversionResult:
    """Read a checkpoint file of any supported layout and convert it.

    Args:
        path: The file.
        source: ``'auto'`` or a layout name (see :data:`SOURCES`).
        num_classes: Class rows to produce (see :func:`convert`).
        target_keys: Exact keys of the target model, if known.
        unsafe_load: See :func:`read_checkpoint_file`.

    Returns:
        ConversionResult: ``state_dict`` is ready for
        ``model.load_state_dict(strict=True)``; ``source`` names the layout.
    """
    checkpoint = read_checkpoint_file(path, unsafe_load=unsafe_load)
    return convert(
        extract_state_dict(checkpoint),
        source=source,
        num_classes=num_classes,
        target_keys=target_keys)
