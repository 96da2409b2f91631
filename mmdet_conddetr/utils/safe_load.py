"""Let ``torch.load(weights_only=True)`` read checkpoints written by mmengine
(and the official repository's, which also store an ``argparse.Namespace``).

This is the package's one call of ``add_safe_globals``: importing
``mmdet_conddetr`` runs :func:`allow_checkpoint_types`, and
:mod:`mmdet_conddetr.checkpoint` calls it again before reading a file (a
no-op then).

Why this exists
---------------
Since torch 2.6, :func:`torch.load` defaults to ``weights_only=True``: its
unpickler only rebuilds tensors, containers, plain Python values and globals
that were explicitly allow-listed. mmengine 0.10.x still calls ``torch.load``
without ``weights_only`` (``mmengine/runner/checkpoint.py``), and the
checkpoints its ``Runner`` writes hold more than tensors:

* ``message_hub.log_scalars`` maps names to
  :class:`mmengine.logging.HistoryBuffer` objects whose histories are numpy
  arrays (``_reconstruct``, ``ndarray``, ``dtype`` and the concrete dtype
  class, e.g. ``Float64DType``);
* ``HistoryBuffer.__getstate__`` stores its statistics methods, which pickle
  (protocol 2, as ``torch.save`` uses) writes as
  ``getattr(HistoryBuffer, 'min')`` and the like;
* ``message_hub.runtime_info`` holds numpy scalars (``eta``, and metric values
  such as ``best_score``), pickled through ``numpy._core.multiarray.scalar``.

Without help, resuming a run (``resume=True``) or ``load_from`` such a file
fails with ``Weights only load failed``. The fix here keeps the safety of
``weights_only`` instead of switching it off: it registers exactly those
globals with :func:`torch.serialization.add_safe_globals`. Nothing patches
``torch.load`` and nothing passes ``weights_only=False``; a checkpoint that
refers to any other global is still refused.

Two entries need care:

* ``builtins.getattr`` itself would let a crafted file fetch any attribute of
  any object it can build (``__globals__`` of a function, for instance). It is
  therefore *not* allow-listed. Instead the name ``builtins.getattr`` is bound
  to :func:`_history_buffer_getattr`, which only returns HistoryBuffer's four
  default statistics methods and refuses everything else.
* numpy moved ``numpy.core`` to ``numpy._core`` in 2.0, and checkpoints record
  whichever spelling wrote them, so ``_reconstruct`` and ``scalar`` are
  registered under both names.

Only numeric and boolean dtype classes are registered, so arrays or scalars of
``object`` dtype (which could carry arbitrary objects) are still refused.

The name-to-object form of ``add_safe_globals`` (tuples) exists from torch 2.6
on, which is also when ``weights_only=True`` became the default. On torch 2.4
and 2.5 only the plain classes are registered (they help callers that pass
``weights_only=True`` explicitly); on older torch this module does nothing.
"""
import argparse
import pickle

import torch

__all__ = [
    'allow_checkpoint_types', 'allow_mmengine_checkpoint_types',
    'mmengine_checkpoint_safe_globals'
]

# Statistics methods HistoryBuffer registers for itself in
# ``HistoryBuffer._set_default_statistics`` and saves in ``__getstate__``.
_HISTORY_BUFFER_METHODS = ('min', 'max', 'mean', 'current')

# numpy dtypes whose arrays/scalars may appear in an mmengine checkpoint:
# HistoryBuffer histories are float64/int64, metric values can be any numeric
# type (e.g. a float32 ``best_score``). None of them can carry Python objects.
_NUMERIC_DTYPES = ('bool', 'int8', 'int16', 'int32', 'int64', 'uint8',
                   'uint16', 'uint32', 'uint64', 'float16', 'float32',
                   'float64')

_registered = False


def _torch_version():
    parts = []
    for piece in torch.__version__.split('+')[0].split('.')[:2]:
        digits = ''.join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def _history_buffer_getattr(obj, name):
    """Stand-in for ``builtins.getattr`` while unpickling with weights_only.

    Pickle protocol 2 saves a function whose qualified name is
    ``HistoryBuffer.min`` as ``getattr(HistoryBuffer, 'min')``. This callable
    serves that single pattern and refuses any other lookup.
    """
    from mmengine.logging import HistoryBuffer

    if obj is HistoryBuffer and name in _HISTORY_BUFFER_METHODS:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'getattr({obj!r}, {name!r}) is not allowed while loading a '
        'checkpoint with weights_only=True; mmdet_conddetr only allows '
        'getattr(HistoryBuffer, <statistics method>) as written by mmengine.')


def _numpy_module(new_name, old_name):
    """Return numpy's ``_core.multiarray`` (numpy 2) or ``core`` (numpy 1)."""
    import importlib

    for name in (new_name, old_name):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise ImportError(f'neither {new_name} nor {old_name} can be imported')


def mmengine_checkpoint_safe_globals():
    """Return the globals mmengine 0.10.x checkpoints need, with their names
    (and ``argparse.Namespace`` of the official checkpoints).

    Returns:
        list[tuple[object, str]]: ``(object, full name in the pickle)`` pairs.
        A name may differ from the object's own location: old numpy spellings
        and the restricted ``builtins.getattr`` stand-in.
    """
    import numpy as np
    from mmengine.logging import HistoryBuffer

    multiarray = _numpy_module('numpy._core.multiarray',
                               'numpy.core.multiarray')
    entries = [
        # the official repository's main.py saves its command line
        (argparse.Namespace, 'argparse.Namespace'),
        (HistoryBuffer, 'mmengine.logging.history_buffer.HistoryBuffer'),
        (_history_buffer_getattr, 'builtins.getattr'),
        (np.ndarray, 'numpy.ndarray'),
        (np.dtype, 'numpy.dtype'),
    ]
    for prefix in ('numpy._core.multiarray', 'numpy.core.multiarray'):
        entries.append((multiarray._reconstruct, f'{prefix}._reconstruct'))
        entries.append((multiarray.scalar, f'{prefix}.scalar'))
    for dtype_name in _NUMERIC_DTYPES:
        dtype_cls = type(np.dtype(dtype_name))
        entries.append(
            (dtype_cls, f'{dtype_cls.__module__}.{dtype_cls.__qualname__}'))
    return entries


def allow_checkpoint_types():
    """Allow-list mmengine's checkpoint contents for ``weights_only`` loads.

    Registers the entries of :func:`mmengine_checkpoint_safe_globals` with
    :func:`torch.serialization.add_safe_globals`. Safe to call any number of
    times; a no-op when torch has no ``add_safe_globals`` (torch < 2.4).

    Returns:
        bool: True if the types are (now) registered, False on old torch.
    """
    global _registered
    if _registered:
        return True
    add_safe_globals = getattr(torch.serialization, 'add_safe_globals', None)
    if add_safe_globals is None:
        return False
    entries = mmengine_checkpoint_safe_globals()
    if _torch_version() >= (2, 6):
        add_safe_globals(entries)
    else:
        # torch 2.4/2.5 only accept bare objects, keyed by their own
        # ``__module__``/``__name__``; the renamed entries cannot be expressed.
        add_safe_globals([
            obj for obj, name in entries
            if isinstance(obj, type)
            and name == f'{obj.__module__}.{obj.__qualname__}'
        ])
    _registered = True
    return True


# The name the package used before the allow-list also took the official
# checkpoints' Namespace.
allow_mmengine_checkpoint_types = allow_checkpoint_types
