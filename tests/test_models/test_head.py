"""ConditionalDETRHead: initialisation, losses by hand, predict."""
import math

import pytest
import torch
from mmdet.structures import DetDataSample
from mmengine.registry import DefaultScope
from mmengine.structures import InstanceData

from mmdet_conddetr.registry import MODELS


def build_head(num_classes=3, embed_dims=8):
    with DefaultScope.overwrite_default_scope('mmdet_conddetr'):
        head = MODELS.build(
            dict(type='ConditionalDETRHead', num_classes=num_classes,
                 embed_dims=embed_dims))
    head.init_weights()
    return head


def sample(height, width, boxes=(), labels=()):
    data = DetDataSample(
        metainfo=dict(img_shape=(height, width), ori_shape=(2 * height,
                                                            2 * width)))
    data.gt_instances = InstanceData(
        bboxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        labels=torch.tensor(labels, dtype=torch.long))
    return data


def test_official_initialisation():
    head = build_head()
    assert torch.all(head.fc_cls.bias == -math.log(99))
    last = head.fc_reg.layers[-1]
    assert torch.all(last.weight == 0) and torch.all(last.bias == 0)
    assert len(head.fc_reg.layers) == 3


def test_boxes_are_offsets_from_the_reference_points():
    head = build_head()
    hidden = torch.randn(2, 1, 4, 8)
    references = torch.rand(1, 4, 2) * 0.8 + 0.1
    _, boxes = head(hidden, references)
    # Zero-initialised last layer: centres are the references, sizes 0.5.
    assert torch.allclose(boxes[..., :2], references.expand(2, -1, -1, -1),
                          atol=1e-6)
    assert torch.allclose(boxes[..., 2:], torch.full_like(boxes[..., 2:], .5))


def test_no_ground_truth_gives_only_a_class_loss():
    head = build_head()
    losses = head.loss(
        torch.randn(2, 1, 4, 8), torch.rand(1, 4, 2), [sample(40, 60)])
    for prefix in ('', 'd0.'):
        assert losses[prefix + 'loss_cls'] > 0
        assert losses[prefix + 'loss_bbox'] == 0
        assert losses[prefix + 'loss_iou'] == 0


def test_one_ground_truth_gives_positive_losses():
    head = build_head()
    losses = head.loss(
        torch.randn(2, 1, 4, 8), torch.rand(1, 4, 2),
        [sample(40, 60, [[5., 5., 30., 20.]], [1])])
    assert set(losses) == {
        'loss_cls', 'loss_bbox', 'loss_iou', 'd0.loss_cls', 'd0.loss_bbox',
        'd0.loss_iou'
    }
    assert all(value > 0 for value in losses.values())


def hand_focal(logit, target):
    p = 1 / (1 + math.exp(-logit))
    if target:
        return -0.25 * (1 - p)**2 * math.log(p)
    return -0.75 * p**2 * math.log(1 - p)


def test_loss_equals_hand_computation():
    """One layer, two queries, two classes, one box: the official criterion
    (focal sum / num_boxes * 2, L1 * 5, (1 - GIoU) * 2) by hand."""
    head = build_head(num_classes=2, embed_dims=8)
    logits = torch.tensor([[[0.3, -1.2], [2.0, 0.5]]])
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.4], [0.3, 0.6, 0.5, 0.3]]])
    head.forward = lambda hidden, references: (logits[None], boxes[None])
    # ground truth: class 1, cxcywh (0.4, 0.5, 0.4, 0.4) of a 100x200 image
    gt = sample(100, 200, [[40., 30., 120., 70.]], [1])
    losses = head.loss(None, None, [gt])
    gt_box = (0.4, 0.5, 0.4, 0.4)

    def match_cost(q):
        p = 1 / (1 + math.exp(-float(logits[0, q, 1])))
        cls = 0.25 * (1 - p)**2 * -math.log(p + 1e-8) - 0.75 * p**2 * -math.log(
            1 - p + 1e-8)
        l1 = sum(abs(float(b) - g) for b, g in zip(boxes[0, q], gt_box))
        return 2 * cls + 5 * l1 - 2 * hand_giou(boxes[0, q].tolist(), gt_box)

    matched = min(range(2), key=match_cost)
    focal = sum(
        hand_focal(float(logits[0, q, c]), q == matched and c == 1)
        for q in range(2) for c in range(2))
    l1 = sum(abs(float(b) - g) for b, g in zip(boxes[0, matched], gt_box))
    giou = hand_giou(boxes[0, matched].tolist(), gt_box)
    assert losses['loss_cls'].item() == pytest.approx(2 * focal, rel=1e-5)
    assert losses['loss_bbox'].item() == pytest.approx(5 * l1, rel=1e-5)
    assert losses['loss_iou'].item() == pytest.approx(2 * (1 - giou), rel=1e-5)


def hand_giou(a, b):
    def corners(box):
        cx, cy, w, h = box
        return cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2

    ax0, ay0, ax1, ay1 = corners(a)
    bx0, by0, bx1, by1 = corners(b)
    inter = max(0, min(ax1, bx1) - max(ax0, bx0)) * max(
        0, min(ay1, by1) - max(ay0, by0))
    union = a[2] * a[3] + b[2] * b[3] - inter
    hull = (max(ax1, bx1) - min(ax0, bx0)) * (max(ay1, by1) - min(ay0, by0))
    return inter / union - (hull - union) / hull


def test_predict_top_k_over_queries_and_classes_rescaled():
    head = build_head(num_classes=3, embed_dims=8)
    logits = torch.randn(1, 1, 5, 3)
    boxes = torch.rand(1, 1, 5, 4) * 0.3 + 0.3
    head.forward = lambda hidden, references: (logits, boxes)
    head.test_cfg = dict(max_per_img=4)
    [result] = head.predict(torch.zeros(1, 1, 5, 8), None, [sample(50, 80)])
    flat = logits[0, 0].sigmoid().flatten()
    expected_scores, expected_index = flat.topk(4)
    assert torch.equal(result.scores, expected_scores)
    assert torch.equal(result.labels, expected_index % 3)
    cx, cy, w, h = boxes[0, 0, expected_index[0] // 3]
    # ori_shape is twice img_shape: boxes are scaled to the original image.
    expected = torch.stack([(cx - w / 2) * 160, (cy - h / 2) * 100,
                            (cx + w / 2) * 160, (cy + h / 2) * 100])
    assert torch.allclose(result.bboxes[0], expected, atol=1e-5)
