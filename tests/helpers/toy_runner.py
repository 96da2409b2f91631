"""A tiny mmengine training run whose checkpoints hold everything mmengine
0.10 puts there, for the safe-load tests (``tests/test_utils/``).

A one-Linear-layer model is trained by a real :class:`mmengine.runner.Runner`
with a validation loop and ``save_best``, so the checkpoints carry
HistoryBuffers with numpy histories, numpy scalars (``eta``, a float32
``best_score``), optimizer and scheduler state. Nothing here depends on the
detector. The ``trained`` fixture (``tests/test_utils/conftest.py``) runs it
once.
"""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from mmengine.evaluator import BaseMetric
from mmengine.model import BaseModel
from mmengine.registry import DATASETS, METRICS, MODELS
from torch import nn
from torch.utils.data import Dataset

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


def runner_cfg(work_dir, experiment_name, max_epochs=2):
    """Runner kwargs: the toy model, data and metric, SGD with momentum, a
    MultiStepLR, a checkpoint every epoch and the best one by ``error``."""
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


def run_python(code):
    """``code`` (dedented) in a fresh interpreter with the repository on
    ``PYTHONPATH``; the CompletedProcess, output captured as text."""
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(
        [REPO_ROOT] + [p for p in [env.get('PYTHONPATH')] if p])
    return subprocess.run([sys.executable, '-c', textwrap.dedent(code)],
                          capture_output=True,
                          text=True,
                          env=env,
                          timeout=600)
