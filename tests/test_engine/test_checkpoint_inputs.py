"""Bad checkpoints get one clear error naming the problem and the fix, and
nothing is loaded partly: through tools/test.py, ``load_from`` and
``--resume`` (the CheckpointMatchHook of the configs)."""
import os

import pytest
import torch
from helpers.reliability import build_runner, make_shapes, write_tiny_config
from helpers.tool_run import tool_error
from mmengine.registry import init_default_scope

from mmdet_conddetr.engine.config_checks import load_config
from mmdet_conddetr.errors import CheckpointMismatchError
from mmdet_conddetr.registry import MODELS


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    return make_shapes(tmp_path_factory.mktemp('shapes'), num_val=2)


@pytest.fixture(autouse=True)
def scope():
    init_default_scope('mmdet_conddetr')


# ------------------------------------------------------------- checkpoints
@pytest.fixture(scope='module')
def checkpoints(tmp_path_factory, shapes):
    """The tiny model's checkpoint and broken or foreign variants of it."""
    from mmdet_conddetr.checkpoint.layouts import get_layout
    from mmdet_conddetr.checkpoint.layouts.native import \
        drop_num_batches_tracked
    init_default_scope('mmdet_conddetr')
    root = tmp_path_factory.mktemp('ckpts')
    cfg = load_config(write_tiny_config(root / 'cfg.py', shapes, test=True))
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    state = model.state_dict()
    paths = {'config': str(root / 'cfg.py')}

    def save(name, obj):
        paths[name] = str(root / f'{name}.pth')
        torch.save(obj, paths[name])

    save('good', {'state_dict': state, 'meta': {'iter': 1}})
    with open(paths['good'], 'rb') as f:
        data = f.read()
    paths['truncated'] = str(root / 'truncated.pth')
    with open(paths['truncated'], 'wb') as f:
        f.write(data[:len(data) // 2])
    paths['text'] = str(root / 'text.pth')
    with open(paths['text'], 'w') as f:
        f.write('{"not": "a checkpoint"}')
    cfg.model.bbox_head.num_classes = 80
    save('coco_head', {'state_dict': MODELS.build(cfg.model).state_dict()})
    cfg.model.bbox_head.num_classes = 4
    cfg.model.decoder.num_layers = 2
    save('deeper', {'state_dict': MODELS.build(cfg.model).state_dict()})
    save('classifier', {'state_dict': {
        'fc.weight': torch.zeros(10, 8), 'conv1.weight': torch.zeros(8)}})
    official = get_layout('official').from_native(
        drop_num_batches_tracked(state)).state_dict
    save('official', {'model': official})
    save('official_deeper', {'model': {
        **official,
        'transformer.decoder.layers.7.linear1.weight': torch.zeros(64, 32)}})
    return paths


@pytest.mark.parametrize('name, expected', [
    ('truncated', 'truncated.pth is truncated: it starts as a PyTorch zip '
     'checkpoint but its end (the zip directory) is missing'),
    ('text', 'text.pth is not a PyTorch checkpoint: it is a JSON text file'),
    ('missing', 'checkpoint not found'),
    ('coco_head', 'coco_head.pth was trained for 80 classes but the model '
     'built from'),
    ('deeper', 'deeper.pth does not fit the model built from'),
    ('classifier', 'it looks like an image classification network'),
    ('official_deeper', "official_deeper.pth (official layout) does not "
     "fit the model built from"),
])
def test_bad_checkpoints_through_test_tool(checkpoints, name, expected,
                                           tmp_path, capsys, monkeypatch):
    path = checkpoints.get(name, str(tmp_path / 'missing.pth'))
    err = tool_error('test.py', [
        checkpoints['config'], path, '--work-dir', tmp_path / 'wd'
    ], capsys, monkeypatch)
    assert expected in err, err
    if name in ('coco_head', 'deeper'):
        assert 'Nothing was loaded' in err or 'nothing was loaded' in err
    if name == 'coco_head':
        assert 'model.bbox_head.num_classes=80' in err
    if name == 'deeper':
        assert 'decoder.layers.1' in err and 'differ in depth' in err
    if name == 'official_deeper':
        assert 'transformer.decoder.layers.7.linear1.weight' in err


def test_load_from_in_training(checkpoints, shapes, tmp_path):
    config = write_tiny_config(tmp_path / 'cfg.py', shapes, max_iters=1,
                               interval=100)
    # another architecture: refused, nothing loaded
    runner = build_runner(config, tmp_path / 'a',
                          load_from=checkpoints['deeper'])
    with pytest.raises(CheckpointMismatchError, match='does not fit'):
        runner.train()
    # another number of classes: fine-tuning, the class head re-initialised
    runner = build_runner(config, tmp_path / 'b',
                          load_from=checkpoints['coco_head'])
    runner.train()
    log = open(next(iter(sorted(
        os.path.join(d, f) for d, _, fs in os.walk(tmp_path / 'b')
        for f in fs if f.endswith('.log'))))).read()
    assert 'fine-tuning from' in log and 'bbox_head.fc_cls.bias' in log
    assert '80 class rows' in log and '4 classes' in log
    # a foreign layout: converted on the fly, every weight loaded
    runner = build_runner(config, tmp_path / 'c',
                          load_from=checkpoints['official'])
    runner.train()
    log = open(next(iter(sorted(
        os.path.join(d, f) for d, _, fs in os.walk(tmp_path / 'c')
        for f in fs if f.endswith('.log'))))).read()
    assert 'converted the checkpoint on the fly from the official layout' \
        in log


def test_resume_when_last_checkpoint_is_broken(checkpoints, shapes, tmp_path,
                                               capsys, monkeypatch):
    config = write_tiny_config(tmp_path / 'cfg.py', shapes)
    work_dir = tmp_path / 'wd'
    work_dir.mkdir()
    (work_dir / 'last_checkpoint').write_text(str(work_dir / 'iter_8.pth'))
    err = tool_error('train.py',
                     [config, '--work-dir', work_dir, '--resume'], capsys,
                     monkeypatch)
    assert f'names {work_dir}/iter_8.pth, which does not exist' in err
    (work_dir / 'last_checkpoint').write_text('')
    err = tool_error('train.py',
                     [config, '--work-dir', work_dir, '--resume'], capsys,
                     monkeypatch)
    assert 'is empty, so there is no checkpoint to resume from' in err
