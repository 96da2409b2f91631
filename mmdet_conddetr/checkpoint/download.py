"""Checkpoints named by URL: a bounded wait, nothing partial, one message.

mmengine fetches every ``http(s)://`` checkpoint -- ``load_from``,
``init_cfg=dict(type='Pretrained', checkpoint=URL)``,
``DetInferencer(weights=URL)`` -- through the ``http://``/``https://`` scheme
of its ``CheckpointLoader``, that is with torch.hub's
``download_url_to_file``: ``urlopen`` without a timeout (a proxy that accepts
the connection and never answers hangs the run forever), a raw ``URLError``
naming neither the config key nor a fix, and a body the server cuts short
kept in the cache as if it were whole (``http.client`` does not check the
length).

Importing the package replaces that scheme (:func:`register_http_loader`,
``force=True``) with :func:`load_from_http`. It differs in the download only:

* connecting and every read wait at most ``MMDET_CONDDETR_DOWNLOAD_TIMEOUT``
  seconds (60 by default, :func:`download_timeout`);
* the file is written next to its cache entry and renamed into place once its
  length matches ``Content-Length``, so a failure leaves nothing in the cache;
* a failure raises one :class:`~mmdet_conddetr.errors.DownloadError` whose
  message (:func:`explain_network_error`) names the URL, the config key or
  argument it came from and the fixes. mmengine hands the loader the URL
  only, so the key is looked up in the config of the ``Runner`` or inferencer
  found on the call stack.

Reading the cached file stays mmengine's ``load_url``, and rank 0 downloads
first, as in mmengine. ``engine.cli`` uses the same message for downloads our
tools see fail elsewhere.
"""
import os
import os.path as osp
import sys
import tempfile
from typing import Iterable, List, Optional, Tuple
from urllib.request import Request, urlopen

import torch
from mmengine.dist import get_dist_info
from mmengine.runner.checkpoint import CheckpointLoader, load_url

from mmdet_conddetr.errors import ConfigCheckError, DownloadError
from .download_message import (NETWORK_ERRORS, IncompleteDownload,
                               cached_path, explain_network_error)

__all__ = [
    'download_timeout', 'config_urls', 'cached_path', 'explain_network_error',
    'fetch', 'load_from_http', 'register_http_loader'
]

TIMEOUT_VARIABLE = 'MMDET_CONDDETR_DOWNLOAD_TIMEOUT'
_DEFAULT_TIMEOUT = 60.0


def download_timeout() -> float:
    """Seconds a download may wait to connect and for each read."""
    raw = os.environ.get(TIMEOUT_VARIABLE) or ''
    if not raw.strip():
        return _DEFAULT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ConfigCheckError(
            f'{TIMEOUT_VARIABLE}={raw!r} is not a number of seconds > 0: '
            f'set it to e.g. 60, or unset it for the default '
            f'{_DEFAULT_TIMEOUT:g} s.')
    return value


def _walk(node, path: str) -> Iterable[Tuple[str, str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, f'{path}.{key}' if path else str(key))
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from _walk(value, f'{path}.{i}')
    elif isinstance(node, str) and node.startswith(('http://', 'https://')):
        yield path, node


def config_urls(cfg, keys=('model', 'load_from')) -> List[Tuple[str, str]]:
    """(config key, URL) of the files the run will download: URLs under
    ``keys`` that are not in the download cache."""
    return [(path, url) for top in keys for path, url in _walk(
        cfg.get(top), top) if not osp.isfile(cached_path(url))]


def _source_on_stack(url: str):
    """(key or argument naming ``url``, config or None) of the load under
    way: the inferencer's ``weights`` argument, else the key of the config of
    the ``Runner`` (or inferencer) loading, else the module whose
    ``init_cfg`` asks for it."""
    from mmengine.infer import BaseInferencer
    from mmengine.model.weight_init import PretrainedInit
    from mmengine.runner import Runner
    label = None
    frame = sys._getframe(1)
    while frame is not None:
        local = frame.f_locals
        owner = local.get('self')
        if isinstance(owner, BaseInferencer) and local.get('weights') == url:
            return 'weights', None  # it builds the model without init_cfg
        if isinstance(owner, PretrainedInit) and label is None:
            label = f'init_cfg of {type(local.get("module")).__name__}'
        if isinstance(owner, (Runner, BaseInferencer)) and \
                getattr(owner, 'cfg', None) is not None:
            # a Pretrained init_cfg is under model; else load_from first
            first = ['load_from', 'model'][::-1 if label else 1]
            tops = first + [k for k in owner.cfg.keys() if k not in first]
            for top in tops:
                for path, found in _walk(owner.cfg.get(top), top):
                    if found == url:
                        return path, owner.cfg
        frame = frame.f_back
    return label, None


def fetch(url: str, path: str, timeout: float, progress: bool = False):
    """Download ``url`` to ``path``; nothing is left at ``path`` (or beside
    it) unless the whole file arrived.

    Raises:
        URLError, OSError, HTTPException: as ``urllib`` does, and
            :class:`IncompleteDownload` for a body shorter than announced.
    """
    folder = osp.dirname(path)
    os.makedirs(folder, exist_ok=True)
    sys.stderr.write(f'Downloading: "{url}" to {path}\n')
    fd, partial = tempfile.mkstemp(
        dir=folder, prefix=osp.basename(path) + '.', suffix='.partial')
    try:
        with os.fdopen(fd, 'wb') as out, urlopen(
                Request(url, headers={'User-Agent': 'mmdet_conddetr'}),
                timeout=timeout) as response:
            length = response.headers.get('Content-Length', '')
            total = int(length) if length.isdigit() else None
            size = 0
            with torch.hub.tqdm(total=total, disable=not progress, unit='B',
                                unit_scale=True, unit_divisor=1024) as bar:
                while True:
                    chunk = response.read(1 << 16)
                    if not chunk:
                        break
                    out.write(chunk)
                    size += len(chunk)
                    bar.update(len(chunk))
        if total is not None and size != total:
            raise IncompleteDownload(
                f'the connection closed after {size} of {total} bytes')
        os.replace(partial, path)
    finally:
        if osp.exists(partial):
            os.remove(partial)


def _ensure_cached(url: str, model_dir: Optional[str], progress: bool):
    path = cached_path(url, model_dir)
    if osp.exists(path):
        return
    timeout = download_timeout()
    try:
        fetch(url, path, timeout, progress)
    except NETWORK_ERRORS as error:
        key, cfg = _source_on_stack(url)
        # A run initialises the model before load_from: after a failed
        # init_cfg the rest is still to come, after load_from nothing is.
        others = []
        if cfg is not None and key.startswith('model.'):
            others = [(k, u) for k, u in config_urls(cfg) if u != url]
        message = explain_network_error(error, [(key, url)] + others,
                                        timeout=timeout)
        # The raw urllib traceback adds nothing for the user; debug shows it.
        cause = error if os.environ.get('MMDET_CONDDETR_DEBUG') else None
        raise DownloadError(message, url=url, key=key) from cause


def load_from_http(filename: str,
                   map_location=None,
                   model_dir: Optional[str] = None,
                   progress: bool = os.isatty(0)):
    """mmengine's ``http(s)://`` checkpoint loader with a bounded, atomic
    download and :class:`DownloadError` on failure (module docstring).

    Args:
        filename (str): The URL.
        map_location: As for :func:`torch.load`.
        model_dir (str, optional): The cache folder; torch.hub's
            ``<hub dir>/checkpoints`` by default.
        progress (bool): Show a progress bar while downloading.

    Returns:
        dict: The loaded checkpoint.
    """
    rank, world_size = get_dist_info()
    if rank == 0:
        _ensure_cached(filename, model_dir, progress)
    if world_size > 1:
        torch.distributed.barrier()
        if rank > 0:  # another node has its own cache
            _ensure_cached(filename, model_dir, progress)
    return load_url(filename, model_dir=model_dir, map_location=map_location,
                    progress=progress)


def register_http_loader() -> None:
    """Make :func:`load_from_http` mmengine's ``http(s)://`` loader."""
    CheckpointLoader.register_scheme(('http://', 'https://'), load_from_http,
                                     force=True)
