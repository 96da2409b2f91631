"""One behaviour from every entry point.

The configs carry everything that changes what a run does (robust data
loading, atomic checkpoints, the non-finite-loss stop, the checkpoint match
check); ``tools/train.py`` only checks. So ``Runner.from_cfg(cfg)`` (a
notebook, ``mim train``, mmdet's own ``tools/train.py``) and our
``tools/train.py`` must build the same datasets, hooks and model.
"""
import importlib.util
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from helpers.reliability import (REPO_ROOT, make_shapes, tool_env,
                                 train_cmd, write_tiny_config)
from mmengine.config import Config
from mmengine.runner import Runner

from mmdet_conddetr.errors import NonFiniteLossError
from mmdet_conddetr.registry import DATASETS, TRANSFORMS

CONFIG_DIR = osp.join(REPO_ROOT, 'configs', 'conditional_detr')
COCO_CONFIGS = ['r50_50ep', 'r50_108ep', 'r101_50ep', 'r101_108ep',
                'dc5_r50_50ep', 'dc5_r50_108ep', 'dc5_r101_50ep',
                'dc5_r101_108ep']
DEMO_CONFIGS = ['shapes_demo', 'shapes_demo_detr']


def _load_train_tool():
    spec = importlib.util.spec_from_file_location(
        'train_tool', osp.join(REPO_ROOT, 'tools', 'train.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fake_coco(root):
    """Empty files where the COCO configs look (preflight checks paths)."""
    for sub in ('train2017', 'val2017', 'annotations'):
        os.makedirs(osp.join(root, sub), exist_ok=True)
    for name in ('instances_train2017.json', 'instances_val2017.json'):
        with open(osp.join(root, 'annotations', name), 'w') as f:
            json.dump({'images': [], 'annotations': [], 'categories': []}, f)
    return str(root) + '/'


def _options(name, data_root):
    options = {'model.backbone.init_cfg': None}  # no download in tests
    if name.startswith('shapes'):
        keys = ('train_dataloader.dataset.data_root',
                'val_dataloader.dataset.data_root',
                'test_dataloader.dataset.data_root')
        options.update({k: data_root for k in keys})
        ann = data_root + 'annotations/instances_val.json'
    else:
        options.update({
            'train_dataloader.dataset.data_root': data_root,
            'val_dataloader.dataset.data_root': data_root,
            'test_dataloader.dataset.data_root': data_root,
        })
        ann = data_root + 'annotations/instances_val2017.json'
    options.update({'val_evaluator.ann_file': ann,
                    'test_evaluator.ann_file': ann})
    return options


def _summary(runner):
    """What a run is made of: dataset and transform classes, hooks with
    their priorities, the model class."""
    def dataset(loader):
        cfg = getattr(runner, f'_{loader}')
        data = cfg['dataset'] if isinstance(cfg, dict) else cfg.dataset
        transforms = [TRANSFORMS.get(t['type']) for t in data['pipeline']]
        return DATASETS.get(data['type']), transforms

    return dict(
        train=dataset('train_dataloader'),
        val=dataset('val_dataloader'),
        hooks=[(type(h).__name__, h.priority) for h in runner.hooks],
        model=type(runner.model))


@pytest.fixture(scope='module')
def shapes_root(tmp_path_factory):
    return make_shapes(tmp_path_factory.mktemp('shapes'))


@pytest.fixture(scope='module')
def data_roots(tmp_path_factory, shapes_root):
    return {'coco': _fake_coco(tmp_path_factory.mktemp('coco')),
            'shapes': shapes_root}


@pytest.fixture
def cheap_build(monkeypatch):
    """Skip what costs time but not structure: random weight init and the
    yapf formatting of the config the runner logs and dumps."""
    for name in ('kaiming_uniform_', 'kaiming_normal_', 'uniform_',
                 'normal_', 'xavier_uniform_', 'trunc_normal_'):
        monkeypatch.setattr(torch.nn.init, name, lambda t, *a, **k: t)
    monkeypatch.setattr(Config, 'pretty_text', property(lambda c: c.text))


@pytest.mark.parametrize('name', COCO_CONFIGS + DEMO_CONFIGS)
def test_runner_from_cfg_and_train_tool_build_the_same_run(
        name, data_roots, tmp_path, monkeypatch, cheap_build):
    config = osp.join(CONFIG_DIR, f'{name}.py')
    root = data_roots['shapes' if name.startswith('shapes') else 'coco']
    options = _options(name, root)

    cfg = Config.fromfile(config)
    cfg.merge_from_dict(options)
    cfg.work_dir = str(tmp_path / 'plain')
    plain = _summary(Runner.from_cfg(cfg))

    tool = _load_train_tool()
    built = []
    monkeypatch.setattr(tool, 'build_runner',
                        lambda cfg, notes: built.append(Runner.from_cfg(cfg))
                        or built[-1])
    monkeypatch.setattr(Runner, 'train', lambda self: None)
    argv = [config, '--work-dir', str(tmp_path / 'tool'), '--cfg-options'
            ] + [f'{k}={v}' for k, v in options.items()]
    monkeypatch.setattr(sys, 'argv', ['train.py'] + argv)
    tool.main()
    ours = _summary(built[0])

    assert ours == plain
    hooks = dict(plain['hooks'])
    assert hooks['AtomicCheckpointHook'] == 'VERY_LOW'
    assert hooks['CheckpointMatchHook'] == 'VERY_HIGH'
    assert 'NonFiniteLossHook' in hooks
    assert 'CheckpointHook' not in hooks
    if name.startswith('shapes'):
        assert plain['train'][0].__name__ == 'RobustCocoDataset'
        assert plain['train'][1][0].__name__ == 'RobustLoadImageFromFile'


def test_runner_from_cfg_writes_atomic_checkpoints(shapes_root, tmp_path):
    config = write_tiny_config(tmp_path / 'cfg.py', shapes_root, max_iters=4,
                               interval=2)
    cfg = Config.fromfile(config)
    cfg.work_dir = str(tmp_path / 'wd')
    runner = Runner.from_cfg(cfg)
    runner.train()
    names = sorted(os.listdir(cfg.work_dir))
    assert 'iter_2.pth' in names and 'iter_4.pth' in names
    assert not [n for n in names if 'tmp' in n]  # no temporary left over
    with open(osp.join(cfg.work_dir, 'last_checkpoint')) as f:
        assert f.read().strip() == osp.join(cfg.work_dir, 'iter_4.pth')
    assert 'AtomicCheckpointHook' in [type(h).__name__ for h in runner.hooks]


NAN_LOSS = ("model = dict(bbox_head=dict(loss_bbox=dict(type='mmdet.L1Loss', "
            "loss_weight=float('nan'))))")


def test_nan_loss_stops_the_same_way_from_runner_and_tool(
        shapes_root, tmp_path):
    config = write_tiny_config(tmp_path / 'cfg.py', shapes_root, max_iters=4,
                               interval=2, extra=NAN_LOSS)
    work_dir = str(tmp_path / 'runner')
    cfg = Config.fromfile(config)
    cfg.work_dir = work_dir
    with pytest.raises(NonFiniteLossError) as info:
        Runner.from_cfg(cfg).train()
    from_runner = str(info.value)
    assert 'loss_bbox=nan' in from_runner and 'iteration 1' in from_runner

    tool_dir = str(tmp_path / 'tool')
    proc = subprocess.run(train_cmd(config, tool_dir), env=tool_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines()
              if line.startswith('error: ')]
    assert len(errors) == 1 and 'Traceback' not in proc.stderr
    first_line = from_runner.splitlines()[0].replace(work_dir, tool_dir)
    assert errors[0][len('error: '):] == first_line
    for folder in (work_dir, tool_dir):  # nothing written after the NaN
        assert not [n for n in os.listdir(folder) if n.endswith('.pth')]


def _hook_table(log: str) -> str:
    """The runner's "Hooks will be executed in the following order" block."""
    start = log.index('Hooks will be executed in the following order:')
    lines = []
    for line in log[start:].splitlines()[1:]:
        if line[:2].isdigit() and ' - mmengine - ' in line:
            break  # the next log record
        lines.append(line)
    return '\n'.join(lines).strip()


def test_mmdets_own_train_script_runs_the_same_hooks(shapes_root, tmp_path):
    import mmdet
    mmdet_train = osp.join(osp.dirname(mmdet.__file__), '.mim', 'tools',
                           'train.py')
    config = write_tiny_config(tmp_path / 'cfg.py', shapes_root, max_iters=2,
                               interval=2)
    logs = {}
    for name, script in (('ours', osp.join(REPO_ROOT, 'tools', 'train.py')),
                         ('mmdet', mmdet_train)):
        work_dir = tmp_path / name
        proc = subprocess.run(
            [sys.executable, script, config, '--work-dir', str(work_dir)],
            env=tool_env(), capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert (work_dir / 'iter_2.pth').is_file()
        logs[name] = _hook_table(proc.stdout + proc.stderr)
    assert logs['ours'] == logs['mmdet']
    for hook in ('AtomicCheckpointHook', 'NonFiniteLossHook',
                 'CheckpointMatchHook'):
        assert hook in logs['mmdet']
