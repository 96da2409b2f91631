"""Downloads a config asks for, on machines that cannot make them.

A config may name files by URL: the backbone's ImageNet weights
(``init_cfg=dict(type='Pretrained', checkpoint='https://...')``) or
``load_from``. mmengine fetches them with ``urllib`` *without a timeout*, so
on a cluster node without internet the run fails with a bare ``URLError``
that does not say which file, and behind a proxy that accepts connections but
never answers it hangs forever.

* :func:`set_download_timeout` gives sockets opened without an explicit
  timeout one (``MMDET_CONDDETR_DOWNLOAD_TIMEOUT`` seconds, 60 by default),
  so a silent proxy ends in an error instead of a hang;
* :func:`config_urls` lists the URLs of a config that are not in torch's
  download cache yet (the ones that will be fetched);
* :func:`explain_network_error` turns the error of a failed download into
  one message naming the URL, the config key and the fixes (download it
  elsewhere and point the config at the file, or run without it).
"""
import os
import os.path as osp
import socket
import ssl
from typing import Iterable, List, Optional, Tuple
from urllib.error import URLError
from urllib.parse import urlparse

__all__ = [
    'set_download_timeout', 'config_urls', 'cached_path',
    'explain_network_error'
]

_DEFAULT_TIMEOUT = 60.0


def set_download_timeout() -> float:
    """Set the default socket timeout unless one is set; return it."""
    current = socket.getdefaulttimeout()
    if current is not None:
        return current
    value = float(os.environ.get('MMDET_CONDDETR_DOWNLOAD_TIMEOUT') or
                  _DEFAULT_TIMEOUT)
    socket.setdefaulttimeout(value)
    return value


def cached_path(url: str) -> str:
    """Where mmengine/torch keep a downloaded ``url`` (the hub cache)."""
    import torch.hub
    name = osp.basename(urlparse(url).path)
    return osp.join(torch.hub.get_dir(), 'checkpoints', name)


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
    found = []
    for top in keys:
        for path, url in _walk(cfg.get(top), top):
            if not osp.isfile(cached_path(url)):
                found.append((path, url))
    return found


_NETWORK_ERRORS = (URLError, socket.timeout, TimeoutError, ConnectionError,
                   ssl.SSLError)


def _reason(error: BaseException) -> str:
    reason = getattr(error, 'reason', None) or error
    if isinstance(reason, (socket.timeout, TimeoutError)) or \
            'timed out' in str(reason):
        return (f'no answer within {socket.getdefaulttimeout() or 0:g} s '
                '(MMDET_CONDDETR_DOWNLOAD_TIMEOUT sets the limit)')
    if isinstance(reason, socket.gaierror):
        return f'the host name cannot be resolved ({reason})'
    return f'{type(reason).__name__}: {reason}'


def _fix(key: str, url: str) -> str:
    name = osp.basename(urlparse(url).path) or 'FILE'
    point = f'--cfg-options {key}=/path/to/{name}'
    without = ''
    if key.endswith('init_cfg.checkpoint'):
        without = (' or start without these weights: --cfg-options '
                   f'{key[:-len(".checkpoint")]}=None')
    elif key == 'load_from':
        point = (f'pass /path/to/{name} as the checkpoint argument '
                 f'(tools/test.py) or {point}')
        without = ' or train without them: --cfg-options load_from=None'
    return (f'Download it on a machine with internet and copy it to '
            f'{cached_path(url)} (where it is looked for first), or point '
            f'at the copy: {point};{without}.')


def explain_network_error(error: BaseException,
                          urls: List[Tuple[str, str]]) -> Optional[str]:
    """A user message for a failed download, or None if ``error`` is not a
    network error or the run downloads nothing."""
    if not urls or not isinstance(error, _NETWORK_ERRORS):
        return None
    proxy = ', '.join(f'{name}={os.environ[name]}'
                      for name in ('HTTPS_PROXY', 'https_proxy',
                                   'HTTP_PROXY', 'http_proxy')
                      if os.environ.get(name))
    via = f' through the proxy {proxy}' if proxy else ''
    key, url = urls[0]
    others = ''
    if len(urls) > 1:
        others = (' The config downloads more files: ' +
                  ', '.join(f'{k}={u}' for k, u in urls[1:]) +
                  '; fetch them the same way.')
    return (f'cannot download {url} ({key}){via}: {_reason(error)}. This '
            'machine cannot reach it (no internet, a firewall, or a proxy '
            f'that does not answer). {_fix(key, url)}{others}')
