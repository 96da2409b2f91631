"""Bad input gets a clear error naming the problem and the fix (issue 8):
configs, data, checkpoints and command lines.

The tools run in-process (``runpy``) with their real ``run_cli`` wrapper, so
what is asserted is what the user sees on stderr; the model is the tiny one
of tests/helpers/reliability.py.
"""
import json
import os
import os.path as osp
import runpy
import sys

import cv2
import numpy as np
import pytest
import torch
from helpers.reliability import (CLASSES, DEMO_CONFIG, REPO_ROOT, TOOLS,
                                 build_runner, make_shapes, write_tiny_config)
from mmengine.config import Config
from mmengine.registry import init_default_scope

from mmdet_conddetr.engine import (CheckpointMismatchError, ConfigCheckError,
                                   DataCheckError, WorkDirError)
from mmdet_conddetr.engine.preflight import check_launch
from mmdet_conddetr.registry import DATASETS, MODELS, TRANSFORMS
from mmdet_conddetr.utils.config_checks import (check_num_classes,
                                                check_registry_types,
                                                explain_registry_key_error,
                                                load_config)


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    return make_shapes(tmp_path_factory.mktemp('shapes'), num_val=2)


@pytest.fixture(autouse=True)
def scope():
    init_default_scope('mmdet_conddetr')


def run_tool(script, args, capsys, monkeypatch):
    """Run tools/<script> in-process; return (exit status, stderr)."""
    monkeypatch.setattr(sys, 'argv', [script] + [str(a) for a in args])
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        runpy.run_path(osp.join(TOOLS, script), run_name='__main__')
    err = capsys.readouterr().err
    return info.value.code, err


def tool_error(script, args, capsys, monkeypatch):
    code, err = run_tool(script, args, capsys, monkeypatch)
    assert code == 1, err
    assert 'error: ' in err, err
    err = err[err.index('error: '):]  # after import-time warnings
    assert 'Traceback' not in err, err
    return err


# ------------------------------------------------------------------ config
def test_missing_config_file_suggests_nearest(capsys, monkeypatch, tmp_path):
    wrong = osp.join(REPO_ROOT, 'configs', 'conditional_detr',
                     'shapes_demo_typo.py')
    err = tool_error('train.py', [wrong, '--work-dir', tmp_path], capsys,
                     monkeypatch)
    assert f'config file not found: {wrong}' in err
    assert 'Did you mean' in err and 'shapes_demo.py' in err


def test_unknown_type_names_place_and_nearest(tmp_path, shapes, capsys,
                                              monkeypatch):
    config = write_tiny_config(
        tmp_path / 'cfg.py', shapes,
        extra="model = dict(bbox_head=dict(type='ConditionalDETRHed'))\n"
        "train_pipeline = [dict(type='LoadImageFromFle')]\n"
        "train_dataloader = dict(dataset=dict(pipeline=train_pipeline))\n")
    err = tool_error('train.py', [config, '--work-dir', tmp_path / 'wd'],
                     capsys, monkeypatch)
    assert "model.bbox_head.type='ConditionalDETRHed' (a model) is not a " \
           "registered type in the 'mmdet_conddetr' scope (set by _scope_). " \
           "Did you mean 'ConditionalDETRHead'" in err
    assert "train_dataloader.dataset.pipeline.0.type='LoadImageFromFle' " \
           "(a transform) is not a registered type. Did you mean " \
           "'LoadImageFromFile'" in err
    assert 'custom_imports' in err
    assert not osp.exists(tmp_path / 'wd' / 'last_checkpoint')


def test_unknown_type_while_building_gets_suggestions():
    # what mmengine raises from deep inside a build (not caught beforehand)
    error = KeyError('FocalLos is not in the mmdet_conddetr::model registry. '
                     'Please check whether the value of `FocalLos` is '
                     'correct or it was registered as expected.')
    message = explain_registry_key_error(error)
    assert "'FocalLos' is not a registered model type" in message
    assert "Did you mean 'FocalLoss'" in message


def test_type_in_another_scope_gets_the_scoped_name():
    cfg = Config.fromfile(DEMO_CONFIG)
    # mmdet's default_runtime gives this dict _scope_='mmdet'
    cfg.default_hooks.checkpoint.type = 'AtomicCheckpointHook'
    with pytest.raises(ConfigCheckError) as info:
        check_registry_types(cfg)
    assert "is not a registered type in the 'mmdet' scope (set by _scope_)" \
        in str(info.value)
    assert "write type='mmdet_conddetr.AtomicCheckpointHook'" in str(
        info.value)


def test_valid_configs_pass_the_type_check():
    for name in ('shapes_demo.py', 'shapes_demo_detr.py', 'r50_50ep.py',
                 'dc5_r101_108ep.py'):
        cfg = Config.fromfile(
            osp.join(REPO_ROOT, 'configs', 'conditional_detr', name))
        check_registry_types(cfg)
        check_num_classes(cfg)


def test_num_classes_differs_from_dataset(tmp_path, shapes, capsys,
                                          monkeypatch):
    config = write_tiny_config(tmp_path / 'cfg.py', shapes)
    err = tool_error('train.py', [
        config, '--work-dir', tmp_path / 'wd', '--cfg-options',
        'model.bbox_head.num_classes=80'
    ], capsys, monkeypatch)
    assert 'model.bbox_head.num_classes=80, but train_dataloader.dataset ' \
           'has 4 classes (circle, square, triangle, star)' in err
    assert '--cfg-options model.bbox_head.num_classes=4' in err


def test_mmdet_base_the_installed_mmdet_lacks(tmp_path, capsys, monkeypatch):
    config = tmp_path / 'cfg.py'
    config.write_text(
        "_base_ = 'mmdet::_base_/datasets/coco_detecton.py'\n")
    err = tool_error('train.py', [config, '--work-dir', tmp_path / 'wd'],
                     capsys, monkeypatch)
    assert 'inherits "mmdet::_base_/datasets/coco_detecton.py", which the ' \
           'installed mmdet 3.3.0 does not have' in err
    assert 'mmdet::_base_/datasets/coco_detection.py' in err  # nearest
    assert 'pip install "mmdet==3.3.0"' in err


def test_unwritable_work_dir_before_anything_runs(tmp_path, shapes, capsys,
                                                  monkeypatch):
    config = write_tiny_config(tmp_path / 'cfg.py', shapes)
    blocker = tmp_path / 'a_file'
    blocker.write_text('not a directory')
    work_dir = blocker / 'work'
    err = tool_error('train.py', [config, '--work-dir', work_dir], capsys,
                     monkeypatch)
    assert f'cannot write to the work directory {work_dir}' in err
    assert 'Pass a writable directory with --work-dir DIR' in err


def test_gpu_count_of_dist_train(monkeypatch):
    cfg = Config(dict(launcher='pytorch'))
    monkeypatch.setenv('LOCAL_WORLD_SIZE', '4')
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 2)
    with pytest.raises(ConfigCheckError) as info:
        check_launch(cfg)
    assert '4 processes were started on this node' in str(info.value)
    assert 'only 2 GPU(s) are visible' in str(info.value)
    assert 'tools/dist_train.sh CONFIG 2' in str(info.value)
    monkeypatch.setenv('LOCAL_WORLD_SIZE', '2')
    assert check_launch(cfg) == []
    # CPU-only: any count works (gloo), too many only gets a note
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    monkeypatch.setenv('LOCAL_WORLD_SIZE', str((os.cpu_count() or 1) + 1))
    assert 'share the cores' in check_launch(cfg)[0]


# -------------------------------------------------------------------- data
def test_missing_data_root_and_annotation(tmp_path, shapes, capsys,
                                          monkeypatch):
    config = write_tiny_config(tmp_path / 'cfg.py', f'{tmp_path}/nope/')
    err = tool_error('train.py', [config, '--work-dir', tmp_path / 'wd'],
                     capsys, monkeypatch)
    assert 'dataset files are missing' in err
    assert 'train_dataloader.dataset.data_root: directory not found: ' \
           f'{tmp_path}/nope/' in err
    assert '--cfg-options train_dataloader.dataset.data_root=' in err

    config = write_tiny_config(
        tmp_path / 'cfg2.py', shapes,
        dataset="ann_file='annotations/missing.json'")
    err = tool_error('train.py', [config, '--work-dir', tmp_path / 'wd'],
                     capsys, monkeypatch)
    assert 'train_dataloader.dataset.ann_file: annotation file not found: ' \
           f'{shapes}annotations/missing.json' in err


def _write_image(path, img):
    assert cv2.imwrite(str(path), img)


def _coco(images, annotations, classes=CLASSES):
    return dict(
        images=images,
        annotations=annotations,
        categories=[dict(id=i + 1, name=n) for i, n in enumerate(classes)])


def _dataset(root, ann, test_mode=False, **kwargs):
    cfg = dict(
        type='RobustCocoDataset',
        data_root=str(root),
        ann_file=ann,
        data_prefix=dict(img='img/'),
        metainfo=dict(classes=CLASSES),
        filter_cfg=dict(filter_empty_gt=False),
        test_mode=test_mode,
        pipeline=[
            dict(type='RobustLoadImageFromFile'),
            dict(type='LoadAnnotations', with_bbox=True),
            dict(type='PackDetInputs')
        ])
    cfg.update(kwargs)
    return DATASETS.build(cfg)


@pytest.fixture(scope='module')
def odd_data(tmp_path_factory):
    """Images of every odd kind, and annotations with bad boxes."""
    root = tmp_path_factory.mktemp('odd')
    (root / 'img').mkdir()
    rgb = np.random.RandomState(0).randint(0, 255, (40, 50, 3), np.uint8)
    _write_image(root / 'img' / 'rgb.png', rgb)
    _write_image(root / 'img' / 'gray.png', rgb[:, :, 0])
    _write_image(root / 'img' / 'rgba.png',
                 np.dstack([rgb, np.full((40, 50), 128, np.uint8)]))
    _write_image(root / 'img' / 'deep.png', rgb.astype(np.uint16) * 257)
    (root / 'img' / 'corrupt.png').write_bytes(b'\x89PNG\r\n\x1a\nbroken')
    names = ['rgb', 'gray', 'rgba', 'deep', 'corrupt', 'empty', 'missing']
    images = [
        dict(id=i + 1, file_name=f'{n}.png', width=50, height=40)
        for i, n in enumerate(names)
    ]
    images[5]['file_name'] = 'rgb.png'  # 'empty': no annotations
    boxes = [
        [5, 5, 10, 10],  # fine
        [5, 5, 0, 10],  # zero width
        [5, 5, 10, -3],  # negative height
        [60, 45, 10, 10],  # outside the 50x40 image
        [45, 35, 20, 20],  # partly outside: kept, as mmdet does
        'junk',  # malformed
        [1, 2, float('nan'), 4],  # malformed
    ]
    annotations = []
    for img_id in (1, 2, 3, 4, 5, 7):
        for box in boxes:
            annotations.append(
                dict(id=len(annotations) + 1, image_id=img_id,
                     category_id=1, bbox=box, area=100, iscrowd=0))
    with open(root / 'ann.json', 'w') as f:
        json.dump(_coco(images, annotations), f)
    return root


def test_bad_boxes_dropped_and_counted_like_mmdet(odd_data):
    dataset = _dataset(odd_data, 'ann.json')
    assert dataset.dropped_boxes == {'size': 12, 'outside': 6,
                                     'malformed': 12}
    assert dataset.num_boxes == 42
    infos = [dataset.get_data_info(i) for i in range(len(dataset))]
    assert len(infos) == 7  # images without annotations are kept
    assert infos[5]['instances'] == []
    assert [i['bbox'] for i in infos[0]['instances']] == [[5, 5, 15, 15],
                                                          [45, 35, 65, 55]]

    # same data list as mmdet's CocoDataset on the boxes it accepts
    from mmdet.datasets import CocoDataset
    clean = json.load(open(odd_data / 'ann.json'))
    clean['annotations'] = [
        a for a in clean['annotations'] if isinstance(a['bbox'], list)
        and a['bbox'][2] == a['bbox'][2]
    ]
    with open(odd_data / 'clean.json', 'w') as f:
        json.dump(clean, f)
    ours = _dataset(odd_data, 'clean.json')
    theirs = CocoDataset(
        data_root=str(odd_data),
        ann_file='clean.json',
        data_prefix=dict(img='img/'),
        metainfo=dict(classes=CLASSES),
        filter_cfg=dict(filter_empty_gt=False),
        pipeline=[])
    assert [ours.get_data_info(i) for i in range(len(ours))] == \
        [theirs.get_data_info(i) for i in range(len(theirs))]


def test_odd_images_become_3_channel_uint8(odd_data):
    load = TRANSFORMS.build(dict(type='RobustLoadImageFromFile'))
    reference = None
    for name in ('rgb', 'gray', 'rgba', 'deep'):
        out = load(dict(img_path=str(odd_data / 'img' / f'{name}.png')))
        img = out['img']
        assert img.shape == (40, 50, 3) and img.dtype == np.uint8, name
        assert out['img_shape'] == (40, 50)
        if name == 'rgb':
            reference = img
        elif name in ('rgba', 'deep'):
            assert np.array_equal(img, reference), name


def test_corrupt_and_missing_images_skipped_in_training(odd_data):
    from mmdet_conddetr.datasets import skipped_images
    dataset = _dataset(odd_data, 'ann.json')
    # index 4 is the corrupt file, 6 a missing one: another image is drawn
    for idx in (4, 6):
        data = dataset[idx]
        assert not data['data_samples'].img_path.endswith(
            ('corrupt.png', 'missing.png'))
    skipped = skipped_images()
    assert 'cannot be decoded' in skipped[str(odd_data / 'img' /
                                              'corrupt.png')]
    assert skipped[str(odd_data / 'img' / 'missing.png')] == 'file not found'

    # test time: evaluation needs every image, so name it
    dataset = _dataset(odd_data, 'ann.json', test_mode=True)
    with pytest.raises(DataCheckError, match='corrupt.png cannot be loaded'):
        dataset[4]


@pytest.mark.parametrize(
    'content, expected',
    [('{"images": [', 'is not valid JSON: Expecting value at line 1'),
     ('[1, 2]', 'is not in COCO detection format'),
     ('{"images": [], "annotations": []}', "no list 'categories'"),
     ('{"images": [], "annotations": [], "categories": []}',
      'lists no images')])
def test_malformed_or_non_coco_json(tmp_path, content, expected):
    (tmp_path / 'img').mkdir()
    (tmp_path / 'ann.json').write_text(content)
    with pytest.raises(DataCheckError, match=expected) as info:
        _dataset(tmp_path, 'ann.json')
    assert str(tmp_path / 'ann.json') in str(info.value)


def test_dataset_names_missing_paths_and_classes(tmp_path, odd_data):
    with pytest.raises(DataCheckError, match='data_root not found'):
        _dataset(tmp_path / 'nowhere', 'ann.json')
    with pytest.raises(DataCheckError, match='annotation file not found'):
        _dataset(odd_data, 'missing.json')
    with pytest.raises(DataCheckError, match='image file not found'):
        _dataset(odd_data, 'ann.json', data_prefix=dict(img='wrong/'))
    with pytest.raises(DataCheckError, match="no category named 'hexagon'"):
        DATASETS.build(
            dict(type='RobustCocoDataset', data_root=str(odd_data),
                 ann_file='ann.json', data_prefix=dict(img='img/'),
                 metainfo=dict(classes=('circle', 'hexagon')), pipeline=[]))


def test_images_without_annotations_train_as_negatives(shapes, tmp_path):
    ann = json.load(open(osp.join(shapes, 'annotations',
                                  'instances_train.json')))
    ann['annotations'] = []  # every image is a negative
    with open(tmp_path / 'empty.json', 'w') as f:
        json.dump(ann, f)
    config = write_tiny_config(
        tmp_path / 'cfg.py', shapes, max_iters=2, interval=100,
        dataset=f"ann_file={str(tmp_path / 'empty.json')!r}")
    runner = build_runner(config, tmp_path / 'wd')
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        runner.train()
    finally:
        torch.set_num_threads(threads)
    assert len(runner.train_dataloader.dataset) == len(ann['images'])
    loss = runner.message_hub.get_scalar('train/loss').current()
    assert np.isfinite(loss) and loss > 0


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


def test_tools_swap_in_robust_data_and_safe_hooks():
    from mmdet_conddetr.engine.preflight import (use_robust_data,
                                                 use_safe_hooks)
    cfg = Config.fromfile(
        osp.join(REPO_ROOT, 'configs', 'conditional_detr', 'r50_50ep.py'))
    cfg.default_hooks.checkpoint.type = 'CheckpointHook'  # a user's config
    cfg.custom_hooks = []
    assert use_robust_data(cfg, ['train_dataloader', 'val_dataloader'])
    use_safe_hooks(cfg, training=True, strict_load=False)
    for loader in ('train_dataloader', 'val_dataloader'):
        dataset = cfg[loader].dataset
        assert dataset.type == 'mmdet_conddetr.RobustCocoDataset'
        assert dataset.pipeline[0].type == \
            'mmdet_conddetr.RobustLoadImageFromFile'
    assert cfg.default_hooks.checkpoint.type == \
        'mmdet_conddetr.AtomicCheckpointHook'
    assert [h.type for h in cfg.custom_hooks] == [
        'mmdet_conddetr.NonFiniteLossHook',
        'mmdet_conddetr.CheckpointMatchHook'
    ]
    check_registry_types(cfg)  # the new names resolve, _scope_ or not
    # as the official code, COCO images without annotations are negatives
    assert cfg.train_dataloader.dataset.filter_cfg.filter_empty_gt is False


def test_demo_config_checks_pass_for_the_shapes_demo():
    # the real demo config must pass every check it can without data
    cfg = Config.fromfile(DEMO_CONFIG)
    check_registry_types(cfg)
    check_num_classes(cfg)
