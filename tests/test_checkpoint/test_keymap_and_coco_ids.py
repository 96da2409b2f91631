"""The renaming engine (KeyMap), the shared rules and the COCO class-id
mapping of the checkpoint converter."""
import pytest
import torch

import mmdet_conddetr  # noqa: F401
from mmdet_conddetr.checkpoint import (COCO_CATEGORY_IDS, COCO_UNUSED_IDS,
                                       PRIOR_BIAS, expand_coco_rows,
                                       select_coco_rows)
from mmdet_conddetr.checkpoint.keymap import KeyMap
from mmdet_conddetr.checkpoint.layouts.rules import renamed, resnet_rules


def test_coco_category_ids():
    assert len(COCO_CATEGORY_IDS) == 80
    assert len(set(COCO_CATEGORY_IDS)) == 80
    assert set(range(1, 91)) - set(COCO_CATEGORY_IDS) == set(COCO_UNUSED_IDS)
    assert list(COCO_CATEGORY_IDS) == sorted(COCO_CATEGORY_IDS)
    weight = torch.randn(91, 4)
    picked = select_coco_rows(weight)
    # class 11 (stop sign) is category id 13, not row 11
    assert torch.equal(picked[11], weight[13])
    back = expand_coco_rows(picked, 0.0)
    assert torch.equal(back[list(COCO_CATEGORY_IDS)], picked)
    bias = expand_coco_rows(torch.zeros(80), PRIOR_BIAS)
    for unused in (0, ) + COCO_UNUSED_IDS:
        assert bias[unused].item() == pytest.approx(-4.59512, abs=1e-4)
        assert back[unused].abs().sum() == 0


def test_keymap_renames_both_ways_and_reports_leftovers():
    keymap = KeyMap([('a.{n}.conv{i}.{w}', 'b.{n}.c{i}.{w}'),
                     ('x.{bn}', 'y.{bn}')])
    result = keymap.convert({
        'a.3.conv2.weight': 1,
        'x.running_var': 2,
        'a.3.conv2.scale': 3
    })
    assert dict(result.state_dict) == {'b.3.c2.weight': 1, 'y.running_var': 2}
    assert result.unmatched == ['a.3.conv2.scale']
    assert keymap.inverse().rename('b.0.c1.bias') == 'a.0.conv1.bias'
    with pytest.raises(ValueError):
        KeyMap([('a.{n}', 'b')])


def test_shared_rules():
    rules = dict(resnet_rules('backbone.0.body', 'backbone'))
    assert rules['backbone.0.body.layer{s}.{b}.downsample.1.{bn}'] == \
        'backbone.layer{s}.{b}.downsample.1.{bn}'
    assert len(rules) == 6
    assert renamed(('a', None, 'c'), ('x', 'y', 'z'), 'p', 'q') == [
        ('p.a.{w}', 'q.x.{w}'), ('p.c.{w}', 'q.z.{w}')]
    with pytest.raises(ValueError, match='aligned'):
        renamed(('a', ), ('x', 'y'))
