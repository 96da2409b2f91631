"""The ``torch.load`` allow-list (:mod:`mmdet_conddetr.utils.safe_load`)
admits only what mmengine checkpoints need: other objects, other uses of the
``getattr`` stand-in and object arrays are still refused; registering is
idempotent and a no-op on a torch without ``add_safe_globals``."""
import pickle

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer

import mmdet_conddetr  # noqa: F401  (registers the allow-list)
from helpers.toy_runner import needs_weights_only_default
from mmdet_conddetr.utils import safe_load


class NotAllowListed:

    def __init__(self, value):
        self.value = value


class _Reduce:
    """Pickles as ``func(*args)``: lets a test write crafted checkpoints."""

    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@needs_weights_only_default
def test_other_objects_are_still_refused(tmp_path):
    path = tmp_path / 'custom.pth'
    torch.save({'weights': torch.ones(2), 'obj': NotAllowListed(3)}, path)
    with pytest.raises(pickle.UnpicklingError, match='NotAllowListed'):
        torch.load(path)


@needs_weights_only_default
@pytest.mark.parametrize('name', ['__init__', 'update', '__dict__'])
def test_getattr_stand_in_only_serves_statistics_methods(tmp_path, name):
    path = tmp_path / 'getattr.pth'
    torch.save({'attr': _Reduce(getattr, (HistoryBuffer, name))}, path)
    with pytest.raises(pickle.UnpicklingError, match='not allowed'):
        torch.load(path)


@needs_weights_only_default
def test_getattr_stand_in_rejects_other_objects(tmp_path):
    path = tmp_path / 'getattr_other.pth'
    torch.save({'attr': _Reduce(getattr, (HistoryBuffer.min, '__globals__'))},
               path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path)


@needs_weights_only_default
def test_object_dtype_arrays_are_refused(tmp_path):
    path = tmp_path / 'object_array.pth'
    torch.save({'array': np.array([1, 'text'], dtype=object)}, path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path)


def test_allow_list_is_idempotent():
    before = len(torch.serialization.get_safe_globals())
    assert safe_load.allow_mmengine_checkpoint_types() is True
    assert safe_load.allow_mmengine_checkpoint_types() is True
    assert len(torch.serialization.get_safe_globals()) == before


def test_allow_list_contents():
    names = {name for _, name in safe_load.mmengine_checkpoint_safe_globals()}
    assert {
        'mmengine.logging.history_buffer.HistoryBuffer',
        'builtins.getattr',
        'numpy.ndarray',
        'numpy.dtype',
        'numpy._core.multiarray._reconstruct',
        'numpy._core.multiarray.scalar',
        'numpy.core.multiarray._reconstruct',
        'numpy.core.multiarray.scalar',
    } <= names
    objects = [obj for obj, _ in safe_load.mmengine_checkpoint_safe_globals()]
    assert getattr not in objects
    assert type(np.dtype(object)) not in objects
    assert type(np.dtype(np.float64)) in objects


def test_noop_without_add_safe_globals(monkeypatch):
    monkeypatch.delattr(torch.serialization, 'add_safe_globals')
    monkeypatch.setattr(safe_load, '_registered', False)
    assert safe_load.allow_mmengine_checkpoint_types() is False
