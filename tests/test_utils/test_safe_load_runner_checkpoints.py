"""Checkpoints written by an mmengine Runner load with ``weights_only=True``
once the package is imported: in a fresh process, with all their contents,
for resuming, and in numpy 1's spelling.

The checkpoints come from the toy run of :mod:`helpers.toy_runner` (the
``trained`` fixture); nothing here depends on the detector.
"""
import zipfile

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner import Runner

import mmdet_conddetr  # noqa: F401  (registers the allow-list)
from helpers.toy_runner import (ITERS_PER_EPOCH, needs_weights_only_default,
                                run_python, runner_cfg)


@needs_weights_only_default
def test_checkpoint_is_refused_without_the_allow_list(trained):
    # Fresh interpreter that never imports mmdet_conddetr: this is the
    # failure the allow-list exists for, so the other tests mean something.
    result = run_python(f"""
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
    result = run_python(f"""
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
    cfg = runner_cfg(tmp_path, 'safe_load_resume')
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
