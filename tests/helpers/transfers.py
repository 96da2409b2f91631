"""Count the calls that are device<->host transfers (or host syncs) on a GPU.

On the CPU nothing is transferred, so :class:`TransferCounter` counts the
calls that *would* be: a ``TorchFunctionMode`` sees every tensor method and
torch function, and records those below when they are made from a file
under ``package`` (default ``mmdet_conddetr/``):

* device -> host (blocking): ``item``, ``tolist``, ``cpu``, ``bool(t)``,
  ``float(t)``, ``int(t)``, ``t.to(<device>)``;
* host -> device: ``t.to(<device>)`` / ``t.cuda()``, ``new_tensor`` (host
  data onto ``t``'s device) and ``torch.tensor`` / ``torch.as_tensor`` with
  a ``device``.

``t.to(<device>)`` is counted whatever the direction (on the CPU both ends
are the CPU); ``t.to(dtype)`` is not. ``numpy()`` is not counted: it only
works on host tensors.
"""
import os.path as osp
import sys
from collections import Counter

import torch
from torch.overrides import TorchFunctionMode

import mmdet_conddetr

PACKAGE = osp.dirname(mmdet_conddetr.__file__)

_ALWAYS = {
    torch.Tensor.item: 'item', torch.Tensor.tolist: 'tolist',
    torch.Tensor.cpu: 'cpu', torch.Tensor.cuda: 'cuda',
    torch.Tensor.__bool__: 'bool', torch.Tensor.__float__: 'float',
    torch.Tensor.__int__: 'int', torch.Tensor.new_tensor: 'new_tensor',
}
_FACTORIES = {torch.tensor: 'torch.tensor', torch.as_tensor: 'as_tensor'}


def _moves_device(args, kwargs) -> bool:
    values = list(args[1:]) + [kwargs.get('device'), kwargs.get('other')]
    return any(
        isinstance(v, (torch.device, torch.Tensor, str)) for v in values)


class TransferCounter(TorchFunctionMode):
    """``with TransferCounter() as counter: ...``; then ``counter.total`` and
    ``counter.calls`` (a Counter of (what, file:line))."""

    def __init__(self, package: str = PACKAGE):
        super().__init__()
        self.package = package
        self.calls = Counter()

    @property
    def total(self) -> int:
        return sum(self.calls.values())

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        what = _ALWAYS.get(func)
        if func is torch.Tensor.to and _moves_device(args, kwargs):
            what = 'to(device)'
        elif func in _FACTORIES and kwargs.get('device') is not None:
            what = _FACTORIES[func]
        if what is not None:
            frame = sys._getframe(1)
            if frame.f_code.co_filename.startswith(self.package):
                where = osp.relpath(frame.f_code.co_filename, self.package)
                self.calls[(what, f'{where}:{frame.f_lineno}')] += 1
        return func(*args, **kwargs)
