"""BatchedHungarianAssigner against brute force and the official cost formula."""
import itertools
import math

import pytest
import torch

from mmdet_conddetr.models.task_modules.assigners import \
    BatchedHungarianAssigner


def reference_cost(logits, boxes, labels, gt_boxes):
    """Official matcher cost written out element by element."""
    num_queries, num_gts = logits.shape[0], labels.shape[0]
    cost = torch.zeros(num_queries, num_gts, dtype=torch.float64)
    for q in range(num_queries):
        for g in range(num_gts):
            p = torch.sigmoid(logits[q, labels[g]].double())
            pos = 0.25 * (1 - p)**2 * -math.log(p + 1e-8)
            neg = 0.75 * p**2 * -math.log(1 - p + 1e-8)
            l1 = (boxes[q].double() - gt_boxes[g].double()).abs().sum()
            cost[q, g] = 2 * (pos - neg) + 5 * l1 - 2 * giou(boxes[q], gt_boxes[g])
    return cost


def giou(a, b):
    ax0, ay0, ax1, ay1 = (a[0] - a[2] / 2, a[1] - a[3] / 2, a[0] + a[2] / 2,
                          a[1] + a[3] / 2)
    bx0, by0, bx1, by1 = (b[0] - b[2] / 2, b[1] - b[3] / 2, b[0] + b[2] / 2,
                          b[1] + b[3] / 2)
    inter = max(0., min(ax1, bx1) - max(ax0, bx0)) * max(
        0., min(ay1, by1) - max(ay0, by0))
    union = a[2] * a[3] + b[2] * b[3] - inter
    hull = (max(ax1, bx1) - min(ax0, bx0)) * (max(ay1, by1) - min(ay0, by0))
    return float(inter / union - (hull - union) / hull)


def random_case(generator, num_queries, num_gts, num_classes=4):
    logits = torch.randn(num_queries, num_classes, generator=generator) * 2
    boxes = torch.rand(num_queries, 4, generator=generator) * 0.4 + 0.2
    labels = torch.randint(0, num_classes, (num_gts, ), generator=generator)
    gt_boxes = torch.rand(num_gts, 4, generator=generator) * 0.4 + 0.2
    return logits, boxes, labels, gt_boxes


@pytest.mark.parametrize('seed', range(6))
def test_matches_brute_force(seed):
    generator = torch.Generator().manual_seed(seed)
    num_queries, num_gts = 5, 1 + seed % 4
    logits, boxes, labels, gt_boxes = random_case(generator, num_queries,
                                                  num_gts)
    cost = reference_cost(logits, boxes, labels, gt_boxes)
    best = min(
        sum(cost[q, g] for g, q in enumerate(perm))
        for perm in itertools.permutations(range(num_queries), num_gts))
    assigner = BatchedHungarianAssigner()
    assert torch.allclose(
        assigner.cost(logits, boxes, labels, gt_boxes).double(), cost,
        atol=1e-5)
    [[(queries, gts)]] = assigner.assign(logits[None, None], boxes[None, None],
                                         [labels], [gt_boxes])
    assert sorted(gts.tolist()) == list(range(num_gts))
    assert len(set(queries.tolist())) == num_gts
    found = sum(cost[q, g] for q, g in zip(queries.tolist(), gts.tolist()))
    assert abs(float(found) - float(best)) < 1e-6


def test_batched_equals_one_by_one():
    generator = torch.Generator().manual_seed(7)
    cases = [random_case(generator, 6, n) for n in (3, 0, 5)]
    logits = torch.stack([c[0] for c in cases])[None].repeat(2, 1, 1, 1)
    boxes = torch.stack([c[1] for c in cases])[None].repeat(2, 1, 1, 1)
    assigner = BatchedHungarianAssigner()
    batched = assigner.assign(logits, boxes, [c[2] for c in cases],
                              [c[3] for c in cases])
    for image, case in enumerate(cases):
        [[single]] = assigner.assign(case[0][None, None], case[1][None, None],
                                     [case[2]], [case[3]])
        for group in range(2):
            assert torch.equal(batched[group][image][0], single[0])
            assert torch.equal(batched[group][image][1], single[1])


def test_no_ground_truth_gives_empty_match():
    logits, boxes = torch.randn(1, 2, 5, 3), torch.rand(1, 2, 5, 4)
    empty = [torch.zeros(0, dtype=torch.long)] * 2
    result = BatchedHungarianAssigner().assign(logits, boxes, empty,
                                               [torch.zeros(0, 4)] * 2)
    assert all(len(q) == 0 and len(g) == 0 for q, g in result[0])


def test_more_ground_truths_than_queries_is_a_clear_error():
    logits, boxes = torch.randn(1, 1, 2, 3), torch.rand(1, 1, 2, 4)
    labels, gt_boxes = torch.zeros(3, dtype=torch.long), torch.rand(3, 4)
    with pytest.raises(ValueError, match='3 ground-truth boxes.*only 2 '
                       'queries.*num_queries'):
        BatchedHungarianAssigner().assign(logits, boxes, [labels], [gt_boxes])


def test_non_finite_prediction_names_the_culprit_and_iteration():
    from mmengine.logging import MessageHub
    MessageHub.get_current_instance().update_info('iter', 41)
    logits, boxes = torch.randn(1, 1, 4, 3), torch.rand(1, 1, 4, 4)
    logits[0, 0, 1, 2] = float('nan')
    with pytest.raises(FloatingPointError,
                       match='non-finite class logits at iteration 42'):
        BatchedHungarianAssigner().assign(
            logits, boxes, [torch.tensor([2])], [torch.rand(1, 4)])
    # A class no ground truth has does not enter the cost: the matching
    # goes on (the class loss, over all classes, is then non-finite).
    [[(queries, gts)]] = BatchedHungarianAssigner().assign(
        logits, boxes, [torch.tensor([1])], [torch.rand(1, 4)])
    assert gts.tolist() == [0] and len(queries) == 1
    boxes[0, 0, 0, 0] = float('inf')
    logits[0, 0, 1, 2] = 0.
    with pytest.raises(FloatingPointError, match='non-finite box predictions'):
        BatchedHungarianAssigner().assign(
            logits, boxes, [torch.tensor([1])], [torch.rand(1, 4)])


def test_cost_is_fp32_under_half_precision_inputs():
    logits = torch.randn(1, 1, 4, 3).to(torch.bfloat16)
    boxes = (torch.rand(1, 1, 4, 4) * 0.5 + 0.2).to(torch.bfloat16)
    cost = BatchedHungarianAssigner().cost(logits, boxes, torch.tensor([0]),
                                           torch.rand(1, 4) * 0.5 + 0.2)
    assert cost.dtype == torch.float32
