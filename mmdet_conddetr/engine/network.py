"""Downloads a config asks for, on machines that cannot make them.

A config may name files by URL: the backbone's ImageNet weights
(``init_cfg=dict(type='Pretrained', checkpoint='https://...')``) or
``load_from``. Checkpoint downloads, from every entry point, go through
:mod:`mmdet_conddetr.checkpoint.download`: they time out after
``MMDET_CONDDETR_DOWNLOAD_TIMEOUT`` seconds and fail with one
``DownloadError`` naming the URL, the key and the fixes. What the tools add
here:

* :func:`set_download_timeout` gives every other socket opened without an
  explicit timeout the same limit, so nothing else a tool fetches can hang;
* :func:`config_urls` lists the URLs of a config that are not in torch's
  download cache yet, so ``engine.cli`` can explain a failed download the
  loader did not make with :func:`explain_network_error` (the same message).
"""
import socket

from mmdet_conddetr.checkpoint.download import (cached_path, config_urls,
                                                download_timeout,
                                                explain_network_error)

__all__ = [
    'set_download_timeout', 'config_urls', 'cached_path',
    'explain_network_error'
]


def set_download_timeout() -> float:
    """Set the default socket timeout unless one is set; return it."""
    current = socket.getdefaulttimeout()
    if current is not None:
        return current
    value = download_timeout()
    socket.setdefaulttimeout(value)
    return value
