"""Bad data gets a clear error or a counted repair: ``RobustCocoDataset`` and
``RobustLoadImageFromFile`` (mmdet_conddetr.datasets), used by the configs,
and the data-path checks of the tools."""
import json
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from helpers.reliability import (CLASSES, build_runner, make_shapes,
                                 write_tiny_config)
from helpers.tool_run import tool_error
from mmengine.registry import init_default_scope

from mmdet_conddetr.errors import DataCheckError
from mmdet_conddetr.registry import DATASETS, TRANSFORMS


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    return make_shapes(tmp_path_factory.mktemp('shapes'), num_val=2)


@pytest.fixture(autouse=True)
def scope():
    init_default_scope('mmdet_conddetr')


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
