"""The COCO configs' training data equal the official
``make_coco_transforms('train')`` on the same random choices.

The config's pipeline is checked to hold the official parameters, then run
with each random choice forced (flip or not; which branch; which short side;
which crop) through our ``RobustCocoDataset`` (``convention='official'``)
and the data preprocessor, and compared with the official transforms
re-implemented in ``tests/helpers/official_transforms.py``: same image size
and pixels, same boxes and labels. mmdet's ``RandomFlip`` and ``RandomCrop``
are kept because they do what the official ``hflip`` and
``RandomSizeCrop(384, 600)`` do: the crop draws its sizes and offsets from
the same ranges (checked on every call) and clips/drops boxes the same way.
"""
import copy
import functools
import json
import os.path as osp

import numpy as np
import pytest
import torch
from mmdet.datasets import CocoDataset
from mmengine.config import Config
from mmengine.registry import DefaultScope

import mmdet_conddetr  # noqa: F401
from builders import CONFIG_DIR
from helpers import official_transforms as official
from helpers.photos import write_photos
from mmdet_conddetr.registry import DATASETS, MODELS

CLASSES = CocoDataset.METAINFO['classes']
# ids as COCO's: not the label index (label = position in CLASSES)
CATEGORY_IDS = [i + 1 + i // 10 for i in range(len(CLASSES))]
ANNOTATIONS = [
    dict(bbox=[100.0, 50.5, 200.25, 150.0], category_id=CATEGORY_IDS[0]),
    dict(bbox=[600.0, 400.0, 60.0, 100.0], category_id=CATEGORY_IDS[5]),
    dict(bbox=[0.0, 0.0, 30.0, 20.0], category_id=CATEGORY_IDS[79]),
    dict(bbox=[300.0, 200.0, 0.5, 40.0], category_id=CATEGORY_IDS[2]),
    dict(bbox=[50.0, 300.0, 120.0, 90.0], category_id=CATEGORY_IDS[7],
         iscrowd=1),
    dict(bbox=[500.0, 10.0, 40.0, 30.0], category_id=CATEGORY_IDS[9],
         area=0),
]
# (flip, branch choices): 'a' = multi-scale resize; 'b' = resize, crop
# (height, width, top, left), multi-scale resize
CASES = [
    (True, ('a', 512)),
    (False, ('a', 800)),
    (True, ('b', 400, (384, 500, 10, 20), 608)),  # from 533x400
    (False, ('b', 600, (560, 423, 30, 8), 480)),  # from 800x600
    (True, ('b', 500, (390, 384, 0, 250), 800)),  # from 666x500
]


@pytest.fixture(scope='module')
def coco(tmp_path_factory):
    root = tmp_path_factory.mktemp('coco')
    photo = write_photos(str(root))['640x480']
    anns = [dict(a, id=i + 1, image_id=7, area=a.get(
        'area', a['bbox'][2] * a['bbox'][3]), iscrowd=a.get('iscrowd', 0))
            for i, a in enumerate(ANNOTATIONS)]
    data = dict(
        images=[dict(id=7, file_name=osp.basename(photo), width=640,
                     height=480)],
        annotations=anns,
        categories=[dict(id=i, name=n) for i, n in zip(CATEGORY_IDS,
                                                          CLASSES)])
    ann_file = root / 'ann.json'
    ann_file.write_text(json.dumps(data))
    return dict(root=str(root), ann_file=str(ann_file), photo=photo,
                annotations=anns)


@functools.lru_cache(maxsize=None)
def _loaded_cfg():
    return Config.fromfile(f'{CONFIG_DIR}/r50_50ep.py')


def _cfg():
    return copy.deepcopy(_loaded_cfg())


def test_train_pipeline_has_the_official_parameters():
    load, annotations, flip, choice, pack = _cfg().train_pipeline
    assert load['color_type'] == 'color_ignore_orientation'
    assert load['imdecode_backend'] == 'pillow'
    assert flip == dict(type='RandomFlip', prob=0.5)
    assert choice['type'] == 'RandomChoice' and choice.get('prob') is None
    [multi], [first, crop, second] = choice['transforms']
    for resize in (multi, second):
        assert resize['scales'] == official.SHORT_SIDES
        assert resize['max_size'] == 1333
    assert first['scales'] == [400, 500, 600] and first['max_size'] is None
    assert crop['crop_type'] == 'absolute_range'
    assert tuple(crop['crop_size']) == (384, 600)
    assert crop['allow_negative_crop'] is True
    for resize in (multi, first, second):
        assert resize['resize_type'] == 'mmdet_conddetr.DETRResize'


def _forced_pipeline(flip, branch):
    """The config's pipeline with every random choice fixed."""
    load, annotations, flip_cfg, choice, pack = copy.deepcopy(
        _cfg().train_pipeline)
    flip_cfg['prob'] = 1.0 if flip else 0.0
    [multi], [first, crop, second] = choice['transforms']
    if branch[0] == 'a':
        steps = [dict(multi, scales=[branch[1]])]
    else:
        steps = [dict(first, scales=[branch[1]]), crop,
                 dict(second, scales=[branch[3]])]
    return [load, annotations, flip_cfg, *steps, pack]


class _ForcedRandint:
    """Stands in for ``np.random.randint``: returns the forced crop values
    and records the [low, high) range each was drawn from."""

    def __init__(self, values):
        self.values, self.ranges = list(values), []

    def __call__(self, low, high=None, *args, **kwargs):
        if high is None:
            low, high = 0, low
        if high - low == 1:  # a one-element choice (RandomChoiceResize)
            return low
        value = self.values.pop(0)
        self.ranges.append((low, high))
        assert low <= value < high
        return value


def _official(coco, flip, branch):
    image = official.load(coco['photo'])
    target = official.prepare(image, coco['annotations'])
    if flip:
        image, target = official.hflip(image, target)
    if branch[0] == 'a':
        return official.resize(image, target, branch[1], 1333)
    image, target = official.resize(image, target, branch[1])
    crop_h, crop_w, top, left = branch[2]
    size = image.size  # what the official RandomSizeCrop draws from
    image, target = official.crop(image, target, (top, left, crop_h, crop_w))
    image, target = official.resize(image, target, branch[3], 1333)
    return image, target, size


@pytest.mark.parametrize('flip,branch', CASES)
def test_forced_training_sample_equals_official(coco, flip, branch,
                                                monkeypatch):
    cfg = _cfg()
    dataset_cfg = cfg.train_dataloader.dataset
    dataset_cfg.update(
        data_root=coco['root'], ann_file=coco['ann_file'],
        data_prefix=dict(img=''), pipeline=_forced_pipeline(flip, branch))
    randint = _ForcedRandint([] if branch[0] == 'a' else [
        branch[2][0], branch[2][1], branch[2][2], branch[2][3]])
    monkeypatch.setattr(np.random, 'randint', randint)
    with DefaultScope.overwrite_default_scope('mmdet_conddetr'):
        dataset = DATASETS.build(dataset_cfg)
        preprocessor = MODELS.build(cfg.model.data_preprocessor)
        packed = dataset[0]
    batch = preprocessor(
        dict(inputs=[packed['inputs']],
             data_samples=[packed['data_samples']]), True)
    [inputs], [sample] = batch['inputs'], batch['data_samples']

    result = _official(coco, flip, branch)
    image, target = result[:2]
    if branch[0] == 'b':  # RandomSizeCrop's ranges, drawn h, w, top, left
        width, height = result[2]
        crop_h, crop_w = branch[2][:2]
        assert randint.ranges == [(384, min(height, 600) + 1),
                                  (384, min(width, 600) + 1),
                                  (0, height - crop_h + 1),
                                  (0, width - crop_w + 1)]
    expected = official.to_input(image)
    assert inputs.shape == expected.shape
    assert (inputs - expected).abs().max() <= 1e-5
    assert sample.img_shape == tuple(expected.shape[1:])
    boxes = sample.gt_instances.bboxes
    labels = [CATEGORY_IDS[i] for i in sample.gt_instances.labels]
    assert labels == target['labels'].tolist()
    torch.testing.assert_close(boxes, target['boxes'], rtol=0, atol=0)


def test_crowd_and_cropped_away_boxes_are_dropped(coco, monkeypatch):
    # crop (384, 384) at (top 0, left 0) of the 400-short-side resize keeps
    # only the boxes in the top-left corner
    flip, branch = False, ('b', 400, (384, 384, 0, 0), 480)
    cfg = _cfg()
    dataset_cfg = cfg.train_dataloader.dataset
    dataset_cfg.update(
        data_root=coco['root'], ann_file=coco['ann_file'],
        data_prefix=dict(img=''), pipeline=_forced_pipeline(flip, branch))
    monkeypatch.setattr(np.random, 'randint',
                        _ForcedRandint([384, 384, 0, 0]))
    with DefaultScope.overwrite_default_scope('mmdet_conddetr'):
        sample = DATASETS.build(dataset_cfg)[0]['data_samples']
    _, target, _ = _official(coco, flip, branch)
    labels = [CATEGORY_IDS[i] for i in sample.gt_instances.labels]
    assert labels == target['labels'].tolist()
    # kept: the first box (cut by the crop), the sub-pixel-wide box and the
    # one at the top-left corner; dropped: the boxes the crop leaves with
    # zero area (right of x=384) and the crowd box, which stays ignored
    assert labels == [CATEGORY_IDS[0], CATEGORY_IDS[79], CATEGORY_IDS[2]]
    assert [CATEGORY_IDS[i] for i in sample.ignored_instances.labels
            ] == [CATEGORY_IDS[7]]
