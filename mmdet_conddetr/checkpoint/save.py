"""Writing checkpoints of any layout, atomically, with their ``meta``.

A file is written under a temporary name and renamed into place, so an
interrupted or failed write (full disk, read-only or impossible folder)
leaves no partial file; the failure is one :class:`CheckpointSaveError`
naming the file and the fix.
"""
import datetime
import os
import os.path as osp
from collections import OrderedDict
from typing import Mapping, Optional

import torch

from ..errors import CheckpointSaveError
from .layouts import get_layout
from .layouts.native import NATIVE

__all__ = ['save_checkpoint', 'checkpoint_meta']


def checkpoint_meta(source: str,
                    config: Optional[str] = None,
                    num_classes: int = 80,
                    source_file: Optional[str] = None) -> dict:
    """The ``meta`` dict written with converted checkpoints.

    Only plain values, so ``torch.load(weights_only=True)`` reads it without
    any allow-listing. For 80 COCO classes it also carries mmdet's
    ``dataset_meta`` (class names and palette), which ``DetInferencer`` and
    ``init_detector`` use.
    """
    from mmdet_conddetr.version import __version__
    meta = {
        'source': source,
        'date': datetime.datetime.now(
            datetime.timezone.utc).isoformat(timespec='seconds'),
        'config': config,
        'converter': f'mmdet_conddetr {__version__} '
        'tools/model_converters/convert_checkpoint.py',
        'num_classes': int(num_classes),
    }
    if source_file:
        meta['source_file'] = osp.basename(source_file)
    if num_classes == 80:
        from mmdet.datasets import CocoDataset
        info = CocoDataset.METAINFO
        meta['dataset_meta'] = {
            'classes': tuple(info['classes']),
            'palette': [tuple(int(c) for c in color)
                        for color in info['palette']],
        }
    return meta


def save_checkpoint(state_dict: Mapping[str, torch.Tensor],
                    path: str,
                    meta: Optional[dict] = None,
                    layout: str = NATIVE) -> None:
    """Write ``state_dict`` as a checkpoint of ``layout``.

    Ours and mmdet's: ``{'state_dict': ..., 'meta': ...}``; official and
    detrex: ``{'model': ..., 'meta': ...}`` (their loaders read ``'model'``
    and ignore the rest); hf: the bare state dict, as ``.safetensors`` when
    ``path`` ends so (string metadata), else as a ``.bin``-style file.

    Raises:
        CheckpointSaveError: the file cannot be written; nothing is left.
    """
    container = get_layout(layout).container
    state_dict = OrderedDict(
        (key, value.detach().cpu().contiguous())
        for key, value in state_dict.items())
    size = sum(value.numel() * value.element_size()
               for value in state_dict.values())
    if container is None and path.endswith('.safetensors'):
        from safetensors.torch import save_file
        text_meta = {'format': 'pt'}
        text_meta.update({
            str(k): str(v)
            for k, v in (meta or {}).items() if k != 'dataset_meta'
        })
        _write_atomically(
            path, lambda tmp: save_file(
                dict(state_dict), tmp, metadata=text_meta), size)
        return
    if container is None:
        checkpoint = state_dict
    else:
        checkpoint = {container: state_dict}
        if meta is not None:
            checkpoint['meta'] = meta
    _write_atomically(path, lambda tmp: torch.save(checkpoint, tmp), size)


def _write_atomically(path: str, write, size: int) -> None:
    """``write(tmp)`` then rename to ``path``: an interrupted or failed write
    (full disk, read-only or missing folder) leaves no partial file.

    Raises:
        CheckpointSaveError: naming ``path``, the cause and the fix.
    """
    tmp, folder = path + '.tmp', osp.dirname(osp.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as error:
        raise CheckpointSaveError(
            f'cannot write {path}: the folder {folder} cannot be created '
            f'({error.strerror or error}). Nothing was written; choose '
            'another output path.') from error
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as error:
        if osp.exists(tmp):
            os.remove(tmp)
        raise CheckpointSaveError(
            f'cannot write {path}: {error.strerror or error}. Nothing was '
            'written; choose a writable folder with enough free space '
            f'(the file needs about {size / 2**20:.0f} MiB).') from error
