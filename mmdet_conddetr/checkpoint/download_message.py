"""The one message for a download that failed.

Shared by the ``http(s)://`` checkpoint loader (:mod:`.download`), which
raises it as a :class:`~mmdet_conddetr.errors.DownloadError` from every entry
point, and by ``engine.cli``, which prints it for a failed download our tools
see anywhere else. It names the URL, the config key or argument that asked
for it, why it failed (refused, no answer within the timeout, unknown host,
an HTTP error) and the fixes: copy the file into the cache where it is looked
for first, point the key at a local copy, start without it, or set a proxy.
"""
import os
import os.path as osp
import socket
import ssl
from http.client import HTTPException, IncompleteRead
from typing import List, Optional, Tuple
from urllib.error import HTTPError, URLError
from urllib.parse import urlparse

__all__ = [
    'NETWORK_ERRORS', 'IncompleteDownload', 'cached_path',
    'explain_network_error'
]


class IncompleteDownload(ConnectionError):
    """The connection ended before the announced length arrived."""


NETWORK_ERRORS = (URLError, socket.timeout, TimeoutError, ConnectionError,
                  ssl.SSLError, HTTPException)

_PROXY_VARIABLES = ('HTTPS_PROXY', 'https_proxy', 'HTTP_PROXY', 'http_proxy')


def cached_path(url: str, model_dir: Optional[str] = None) -> str:
    """Where mmengine/torch keep a downloaded ``url`` (the hub cache)."""
    import torch.hub
    folder = model_dir or osp.join(torch.hub.get_dir(), 'checkpoints')
    return osp.join(folder, osp.basename(urlparse(url).path))


def _reason(error: BaseException, timeout: Optional[float]) -> str:
    if isinstance(error, HTTPError):
        return f'the server answered HTTP {error.code} {error.reason}'
    reason = getattr(error, 'reason', None) or error
    if isinstance(reason, (socket.timeout, TimeoutError)) or \
            'timed out' in str(reason):
        return (f'no answer within {timeout or 0:g} s, a timeout '
                '(MMDET_CONDDETR_DOWNLOAD_TIMEOUT sets the limit)')
    if isinstance(reason, socket.gaierror):
        return f'the host name cannot be resolved ({reason})'
    return f'{type(reason).__name__}: {reason}'


def _is_config_key(key: Optional[str]) -> bool:
    return bool(key) and ' ' not in key and key != 'weights'


def _fix(key: Optional[str], url: str) -> str:
    name = osp.basename(urlparse(url).path) or 'FILE'
    local = f'/path/to/{name}'
    if key == 'weights':
        point = (f"DetInferencer(weights='{local}') (demo/image_demo.py: "
                 f'--weights {local})')
    elif _is_config_key(key):
        point = (f"set {key}='{local}' in the config (our tools, mim "
                 f'train: --cfg-options {key}={local})')
    else:
        point = f'set the config key or argument that names it to {local}'
    without = ''
    if key == 'load_from':
        point = (f'pass {local} as the checkpoint argument (tools/test.py) '
                 f'or {point}')
        without = '; or train without it: --cfg-options load_from=None'
    elif _is_config_key(key) and key.endswith('init_cfg.checkpoint'):
        without = ('; or start without these weights: --cfg-options '
                   f'{key[:-len(".checkpoint")]}=None')
    return (f'Download it on a machine with internet and copy it to '
            f'{cached_path(url)} (where it is looked for first), or point '
            f'at the copy: {point}{without}.')


def explain_network_error(
        error: BaseException,
        urls: List[Tuple[Optional[str], str]],
        timeout: Optional[float] = None) -> Optional[str]:
    """A user message for a failed download, or None if ``error`` is not a
    network error or the run downloads nothing.

    Args:
        error (BaseException): What the download raised.
        urls (list[tuple]): (config key or argument, or None; URL) of the
            file that failed first, then of the others the run downloads.
        timeout (float, optional): The timeout the download had; the
            process's default socket timeout when not given.
    """
    if not urls or not isinstance(error, NETWORK_ERRORS):
        return None
    if timeout is None:
        timeout = socket.getdefaulttimeout()
    proxy = ', '.join(f'{name}={os.environ[name]}'
                      for name in _PROXY_VARIABLES if os.environ.get(name))
    via = f' through the proxy {proxy}' if proxy else ''
    key, url = urls[0]
    where = f' ({key})' if key else ''
    if isinstance(error, HTTPError):
        why = 'The server is reachable but does not serve it: check the URL.'
    elif isinstance(error, (IncompleteDownload, IncompleteRead)):
        why = ('The transfer broke off (an unstable network or a proxy that '
               'cuts long downloads); running again retries it.')
    else:
        why = ('This machine cannot reach it (no internet, a firewall, or a '
               'proxy that does not answer).')
        why += (' Check that the proxy works, or unset it.' if proxy else
                ' If the internet is reachable through a proxy, set '
                'HTTPS_PROXY and HTTP_PROXY to it.')
    others = ''
    if len(urls) > 1:
        others = (' The config downloads more files: ' +
                  ', '.join(f'{k}={u}' for k, u in urls[1:]) +
                  '; fetch them the same way.')
    return (f'cannot download {url}{where}{via}: {_reason(error, timeout)}. '
            f'{why} {_fix(key, url)}{others}')
