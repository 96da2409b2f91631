"""``DETRResize``: the official size rule and PIL's bilinear filter, alone
and inside mmcv's ``RandomChoiceResize``."""
import numpy as np
import pytest
from mmcv.transforms import RandomChoiceResize
from mmdet.structures.bbox import HorizontalBoxes
from mmengine.registry import DefaultScope
from PIL import Image

import mmdet_conddetr  # noqa: F401
from helpers import official_transforms as official
from mmdet_conddetr.datasets import DETRResize, detr_output_size


def test_size_rule_equals_official_on_a_grid():
    for width in range(300, 1400, 37):
        for height in range(200, 1000, 29):
            for short in (400, 480, 600, 800):
                for max_size in (None, 1333):
                    assert detr_output_size(width, height, short, max_size) \
                        == official.output_size(width, height, short,
                                                max_size)


def test_size_rule_truncates_and_may_pass_the_cap_by_one():
    assert detr_output_size(640, 480, 800, 1333) == (1066, 800)
    assert official.mmcv_rescale_size(640, 480) == (1067, 800)  # mmdet
    # capped: short side round(1333 * 200 / 640) = 417, long int(1334.4)
    assert detr_output_size(640, 200, 800, 1333) == (1334, 417)
    assert official.mmcv_rescale_size(640, 200) == (1333, 417)
    assert detr_output_size(640, 200, 800, None) == (2560, 800)
    assert detr_output_size(480, 480, 480, 1333) == (480, 480)
    assert detr_output_size(100, 50, (70, 30), 1333) == (70, 30)


def _results(width=160, height=120, seed=0):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    boxes = HorizontalBoxes(np.array([[0, 0, width, height],
                                      [10.5, 20, 50, 100]], np.float32))
    seg = rng.integers(0, 5, (height, width), dtype=np.uint8)
    return dict(img=img, gt_bboxes=boxes, gt_seg_map=seg)


@pytest.mark.parametrize('scale,max_size', [(200, None), (90, 1333),
                                            (200, 230), ((77, 55), None)])
def test_resize_is_pil_bilinear_with_new_over_old_factors(scale, max_size):
    results = _results()
    img = results['img'].copy()
    out = DETRResize(scale=scale, max_size=max_size)(results)
    new_w, new_h = detr_output_size(160, 120, scale, max_size)
    expected = np.array(Image.fromarray(img).resize((new_w, new_h),
                                                    Image.BILINEAR))
    assert np.array_equal(out['img'], expected)
    assert out['img_shape'] == (new_h, new_w)
    assert out['gt_seg_map'].shape == (new_h, new_w)
    assert out['scale_factor'] == (new_w / 160, new_h / 120)
    # the whole-image box becomes the whole resized image
    np.testing.assert_allclose(out['gt_bboxes'].tensor[0].numpy(),
                               [0, 0, new_w, new_h], rtol=1e-6)
    np.testing.assert_allclose(
        out['gt_bboxes'].tensor[1].numpy(),
        np.array([10.5, 20, 50, 100]) * ([new_w / 160, new_h / 120] * 2),
        rtol=1e-6)


def test_inside_random_choice_resize():
    with DefaultScope.overwrite_default_scope('mmdet_conddetr'):
        transform = RandomChoiceResize(
            scales=[100, 150, 200],
            resize_type='mmdet_conddetr.DETRResize',
            max_size=230)
    np.random.seed(0)
    seen = set()
    for _ in range(12):
        out = transform(_results())
        short = [100, 150, 200][out['scale_idx']]
        new_w, new_h = detr_output_size(160, 120, short, 230)
        assert out['img_shape'] == (new_h, new_w)
        seen.add(short)
    assert seen == {100, 150, 200}
    # 200 would give 266 x 200; the cap 230 makes it round(230*120/160)=172
    assert detr_output_size(160, 120, 200, 230) == (229, 172)
