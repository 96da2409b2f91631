"""``RobustCocoDataset(convention='official')`` reads a COCO file as the
official loader (torchvision's ``CocoDetection`` + ``ConvertCocoPolysToMask``);
the default stays mmdet's."""
import json

import pytest
from mmdet.datasets import CocoDataset

from mmdet_conddetr.datasets import RobustCocoDataset

CLASSES = ('cat', 'dog')
BOXES = {
    'normal': [10, 10, 50, 40],
    'sub_pixel_wide': [20, 20, 0.5, 30],
    'zero_area_field': [30, 30, 20, 20],
    'zero_width': [40, 40, 0, 10],
    'outside': [200, 10, 10, 10],
    'crossing_border': [90, 50, 30, 30],
}


@pytest.fixture()
def ann_file(tmp_path):
    annotations = []
    for i, (name, box) in enumerate(BOXES.items()):
        annotations.append(
            dict(id=i + 1, image_id=9, category_id=1, bbox=box, iscrowd=0,
                 area=0 if name == 'zero_area_field' else box[2] * box[3]))
    annotations.append(dict(id=99, image_id=9, category_id=2,
                            bbox=[5, 5, 20, 20], area=400, iscrowd=1))
    images = [dict(id=i, file_name=f'{i}.jpg', width=100, height=80)
              for i in (9, 3, 5)]
    path = tmp_path / 'ann.json'
    path.write_text(json.dumps(dict(
        images=images, annotations=annotations,
        categories=[dict(id=1, name='cat'), dict(id=2, name='dog')])))
    (tmp_path / '9.jpg').write_bytes(b'')  # exists: the path check passes
    return str(path)


def _dataset(ann_file, **kwargs):
    return RobustCocoDataset(
        ann_file=ann_file, data_prefix=dict(img=ann_file.rsplit('/', 1)[0]),
        metainfo=dict(classes=CLASSES), filter_cfg=dict(filter_empty_gt=False),
        pipeline=[], **kwargs)


def _boxes(dataset, img_id):
    infos = (dataset.get_data_info(i) for i in range(len(dataset)))
    [info] = [d for d in infos if d['img_id'] == img_id]
    return [(i['bbox'], i['ignore_flag']) for i in info['instances']]


def test_official_convention(ann_file):
    dataset = _dataset(ann_file, convention='official')
    # torchvision's CocoDetection: ids sorted (mmdet: file order 9, 3, 5)
    assert [dataset.get_data_info(i)['img_id'] for i in range(3)] == [3, 5, 9]
    kept = [box for box, _ in _boxes(dataset, 9)]
    expected = [BOXES[n] for n in ('normal', 'sub_pixel_wide',
                                   'zero_area_field', 'crossing_border')]
    assert kept[:-1] == [[x, y, x + w, y + h] for x, y, w, h in expected]
    # the crowd box stays, flagged: PackDetInputs keeps it out of the targets
    assert _boxes(dataset, 9)[-1] == ([5, 5, 25, 25], 1)
    assert dataset.dropped_boxes == {'size': 1, 'outside': 1}


def test_mmdet_convention_is_the_default_and_equals_mmdet(ann_file):
    ours = _dataset(ann_file)
    theirs = CocoDataset(
        ann_file=ann_file, data_prefix=dict(img=ann_file.rsplit('/', 1)[0]),
        metainfo=dict(classes=CLASSES), filter_cfg=dict(filter_empty_gt=False),
        pipeline=[])
    assert [ours.get_data_info(i)['img_id'] for i in range(3)] == [9, 3, 5]
    for i in range(3):
        assert ours.get_data_info(i)['instances'] == \
            theirs.get_data_info(i)['instances']
    assert ours.dropped_boxes == {'size': 3, 'outside': 1}


def test_unknown_convention_is_refused(ann_file):
    with pytest.raises(ValueError, match="'official'.*'detr'"):
        _dataset(ann_file, convention='detr')
