"""TF32 matmuls: on by default for Ampere+ GPUs through the configs, off by a
config switch, and nothing changes without such a GPU (this machine)."""
import pytest
import torch
from mmengine.runner import Runner

from builders import load_config
from mmdet_conddetr.engine.hooks import TF32Hook, set_tf32_matmul


@pytest.fixture
def restore_tf32():
    before = torch.backends.cuda.matmul.allow_tf32
    yield
    torch.backends.cuda.matmul.allow_tf32 = before


def fake_gpu(monkeypatch, capability):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'get_device_capability',
                        lambda device=None: capability)


def test_no_change_without_cuda(restore_tf32):
    torch.backends.cuda.matmul.allow_tf32 = False
    assert not torch.cuda.is_available()
    assert set_tf32_matmul(True) is None
    assert torch.backends.cuda.matmul.allow_tf32 is False


@pytest.mark.parametrize('capability', [(8, 0), (9, 0)])
def test_ampere_or_newer_switches_cuda_matmuls_only(capability, monkeypatch,
                                                    restore_tf32):
    fake_gpu(monkeypatch, capability)
    cpu_matmuls = torch.backends.mkldnn.matmul.fp32_precision
    assert set_tf32_matmul(True) == 'tf32'
    assert torch.backends.cuda.matmul.allow_tf32 is True
    assert torch.backends.cuda.matmul.fp32_precision == 'tf32'
    assert torch.backends.mkldnn.matmul.fp32_precision == cpu_matmuls
    assert set_tf32_matmul(False) == 'ieee'
    assert torch.backends.cuda.matmul.allow_tf32 is False


def test_older_gpus_are_left_alone(monkeypatch, restore_tf32):
    fake_gpu(monkeypatch, (7, 5))
    torch.backends.cuda.matmul.allow_tf32 = False
    assert set_tf32_matmul(True) is None
    assert torch.backends.cuda.matmul.allow_tf32 is False


@pytest.mark.parametrize('name', ['r50_50ep.py', 'dc5_r101_108ep.py',
                                  'shapes_demo.py'])
def test_configs_allow_tf32_by_default_and_can_switch_it_off(name):
    cfg = load_config(name)
    assert cfg.default_hooks.tf32 == dict(type='mmdet_conddetr.TF32Hook',
                                          allow_tf32=True)
    cfg.merge_from_dict({'default_hooks.tf32.allow_tf32': False})
    assert cfg.default_hooks.tf32.allow_tf32 is False


def test_the_runner_applies_it_before_the_run(tmp_path, monkeypatch,
                                              restore_tf32):
    cfg = load_config('r50_50ep.py')
    cfg.model.num_queries = 4
    cfg.work_dir = str(tmp_path)
    runner = Runner.from_cfg(cfg)
    hooks = [hook for hook in runner.hooks if isinstance(hook, TF32Hook)]
    assert len(hooks) == 1 and hooks[0].allow_tf32 is True
    fake_gpu(monkeypatch, (8, 6))
    torch.backends.cuda.matmul.allow_tf32 = False
    runner.call_hook('before_run')
    assert torch.backends.cuda.matmul.allow_tf32 is True
