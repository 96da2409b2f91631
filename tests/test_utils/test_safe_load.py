"""Checkpoints written by an mmengine Runner load with ``weights_only=True``.

A tiny model (one Linear layer) is trained for two epochs by a real
:class:`mmengine.runner.Runner`, with a validation loop and ``save_best`` so
that the checkpoints hold everything mmengine 0.10 puts there: HistoryBuffers
with numpy histories, numpy scalars (``eta``, a float32 ``best_score``),
optimizer and scheduler state. Nothing here depends on the detector.
"""
import os
import pickle
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest
import torch
from mmengine.evaluator import BaseMetric
from mmengine.logging import HistoryBuffer
from mmengine.model import BaseModel
from mmengine.registry import DATASETS, METRICS, MODELS
from mmengine.runner import Runner
from torch import nn
from torch.utils.data import Dataset

import mmdet_conddetr  # noqa: F401  (registers the allow-list)
from mmdet_conddetr.utils import safe_load

REPO_ROOT = os.path.abspath(
    os.path.join(os.path.dirname(__file__), '..', '..'))
TORCH_VERSION = safe_load._torch_version()
needs_weights_only_default = pytest.mark.skipif(
    TORCH_VERSION < (2, 6),
    reason='torch.load defaults to weights_only=True from torch 2.6 on')

ITERS_PER_EPOCH = 2  # 8 samples, batch size 4


@DATASETS.register_module(name='SafeLoadToyDataset', force=True)
class ToyDataset(Dataset):

    def __init__(self, num_samples=8):
        generator = torch.Generator().manual_seed(0)
        self.inputs = torch.randn(num_samples, 2, generator=generator)
        self.targets = self.inputs.sum(dim=1, keepdim=True)

    def __len__(self):
        return len(self.inputs)

    def __getitem__(self, index):
        return dict(inputs=self.inputs[index], targets=self.targets[index])


@MODELS.register_module(name='SafeLoadToyModel', force=True)
class ToyModel(BaseModel):

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, inputs, targets=None, mode='tensor'):
        outputs = self.linear(inputs)
        if mode == 'loss':
            return dict(loss=((outputs - targets)**2).mean())
        if mode == 'predict':
            return [(outputs - targets).abs()]
        return outputs


@METRICS.register_module(name='SafeLoadToyMetric', force=True)
class ToyMetric(BaseMetric):
    """Returns numpy scalars, as many real metrics do."""

    def process(self, data_batch, data_samples):
        self.results.append(float(data_samples[0].mean()))

    def compute_metrics(self, results):
        return dict(error=np.float32(np.mean(results)))


def _runner_cfg(work_dir, experiment_name, max_epochs=2):
    dataloader = dict(
        dataset=dict(type='SafeLoadToyDataset'),
        sampler=dict(type='DefaultSampler', shuffle=False),
        collate_fn=dict(type='default_collate'),
        batch_size=4,
        num_workers=0)
    return dict(
        model=dict(type='SafeLoadToyModel'),
        work_dir=str(work_dir),
        experiment_name=experiment_name,
        train_dataloader=dataloader,
        val_dataloader=dataloader,
        val_evaluator=dict(type='SafeLoadToyMetric'),
        train_cfg=dict(by_epoch=True, max_epochs=max_epochs, val_interval=1),
        val_cfg=dict(),
        optim_wrapper=dict(
            optimizer=dict(type='SGD', lr=0.01, momentum=0.9)),
        param_scheduler=dict(
            type='MultiStepLR', by_epoch=True, milestones=[1], gamma=0.1),
        default_hooks=dict(
            checkpoint=dict(
                type='CheckpointHook',
                interval=1,
                save_best='error',
                rule='less'),
            logger=dict(type='LoggerHook', interval=1)),
        randomness=dict(seed=0),
        default_scope='mmengine',
        log_level='WARNING')


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """Train two epochs; return the work dir (epoch_1.pth, epoch_2.pth)."""
    work_dir = tmp_path_factory.mktemp('safe_load_run')
    runner = Runner(**_runner_cfg(work_dir, 'safe_load_train'))
    runner.train()
    assert (work_dir / 'epoch_1.pth').is_file()
    assert (work_dir / 'epoch_2.pth').is_file()
    return work_dir


def _run_python(code):
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(
        [REPO_ROOT] + [p for p in [env.get('PYTHONPATH')] if p])
    return subprocess.run([sys.executable, '-c', textwrap.dedent(code)],
                          capture_output=True,
                          text=True,
                          env=env,
                          timeout=600)


@needs_weights_only_default
def test_checkpoint_is_refused_without_the_allow_list(trained):
    # Fresh interpreter that never imports mmdet_conddetr: this is the
    # failure the allow-list exists for, so the other tests mean something.
    result = _run_python(f"""
        import pickle, torch
        try:
            torch.load({str(trained / 'epoch_1.pth')!r})
        except pickle.UnpicklingError as e:
            print('REFUSED', e)
        else:
            print('LOADED')
        """)
    assert result.returncode == 0, result.stderr
    assert 'REFUSED' in result.stdout
    assert 'HistoryBuffer' in result.stdout or 'numpy' in result.stdout


@needs_weights_only_default
def test_plain_torch_load_works_after_import_in_fresh_process(trained):
    result = _run_python(f"""
        import torch
        import mmdet_conddetr
        ckpt = torch.load({str(trained / 'epoch_2.pth')!r})
        print('EPOCH', ckpt['meta']['epoch'], ckpt['meta']['iter'])
        """)
    assert result.returncode == 0, result.stderr
    assert 'EPOCH 2 4' in result.stdout


def test_checkpoint_contents_after_plain_torch_load(trained):
    # No weights_only argument: the default (True on torch >= 2.6) applies.
    ckpt = torch.load(trained / 'epoch_2.pth')
    assert ckpt['meta']['epoch'] == 2
    assert ckpt['meta']['iter'] == 2 * ITERS_PER_EPOCH
    assert set(ckpt) >= {
        'meta', 'state_dict', 'message_hub', 'optimizer', 'param_schedulers'
    }
    scalars = ckpt['message_hub']['log_scalars']
    loss = scalars['train/loss']
    assert isinstance(loss, HistoryBuffer)
    assert isinstance(loss.data[0], np.ndarray)
    assert len(loss.data[0]) == 2 * ITERS_PER_EPOCH
    # The statistics methods come back as HistoryBuffer's own functions.
    assert loss._statistics_methods['mean'] is HistoryBuffer.mean
    assert np.isclose(loss.mean(1), loss.data[0][-1])
    runtime_info = ckpt['message_hub']['runtime_info']
    assert isinstance(runtime_info['best_score'], np.float32)
    assert isinstance(runtime_info['eta'], np.floating)
    assert 'momentum_buffer' in ckpt['optimizer']['state'][0]


def test_resume_restores_epoch_iter_and_optimizer(trained, tmp_path):
    saved = torch.load(trained / 'epoch_1.pth')
    cfg = _runner_cfg(tmp_path, 'safe_load_resume')
    cfg.update(resume=True, load_from=str(trained / 'epoch_1.pth'))
    runner = Runner(**cfg)
    # Goes through mmengine's own torch.load call (no weights_only argument).
    runner.load_or_resume()

    assert runner.epoch == 1
    assert runner.iter == ITERS_PER_EPOCH
    optimizer = runner.optim_wrapper.optimizer
    restored = optimizer.state_dict()
    for index, state in saved['optimizer']['state'].items():
        torch.testing.assert_close(restored['state'][index]['momentum_buffer'],
                                   state['momentum_buffer'])
    assert optimizer.param_groups[0]['lr'] == pytest.approx(
        saved['optimizer']['param_groups'][0]['lr'])
    for name, value in saved['state_dict'].items():
        torch.testing.assert_close(runner.model.state_dict()[name], value)
    scheduler = runner.param_schedulers[0]
    assert scheduler.last_step == saved['param_schedulers'][0]['last_step']
    history = runner.message_hub.get_scalar('train/loss').data[0]
    np.testing.assert_allclose(
        history, saved['message_hub']['log_scalars']['train/loss'].data[0])

    # Training continues from the restored state to the last epoch.
    runner.train()
    assert runner.epoch == 2
    assert runner.iter == 2 * ITERS_PER_EPOCH


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


@needs_weights_only_default
def test_numpy_1_spelling_is_accepted(trained, tmp_path):
    # numpy < 2 writes numpy.core.multiarray._reconstruct/scalar; rewrite the
    # checkpoint's pickle to that spelling (GLOBAL names are plain text lines).
    legacy = tmp_path / 'legacy_numpy.pth'
    with zipfile.ZipFile(trained / 'epoch_2.pth') as src, \
            zipfile.ZipFile(legacy, 'w', zipfile.ZIP_STORED) as dst:
        replaced = 0
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename.endswith('data.pkl'):
                replaced = data.count(b'numpy._core.multiarray\n')
                data = data.replace(b'numpy._core.multiarray\n',
                                    b'numpy.core.multiarray\n')
            dst.writestr(info.filename, data)
    assert replaced > 0
    with zipfile.ZipFile(legacy) as written:
        pickled = b''.join(
            written.read(name) for name in written.namelist()
            if name.endswith('data.pkl'))
    assert b'numpy.core.multiarray\n_reconstruct\n' in pickled
    ckpt = torch.load(legacy)
    assert isinstance(ckpt['message_hub']['log_scalars']['train/loss'].data[0],
                      np.ndarray)


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
