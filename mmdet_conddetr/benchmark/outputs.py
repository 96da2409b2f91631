"""The output check: both models give the same per-layer logits and boxes
(``mode='tensor'``) and the same detections to 1e-4.

mmdet clips its boxes to the image, the official ``PostProcess`` (and ours)
does not: ours are clipped the same way for the comparison.
"""
from typing import Any, Dict, Sequence, Tuple

import torch
from torch import Tensor

from .settings import TOLERANCE

Detections = Tuple[Tensor, Tensor, Tensor]


def match_detections(a: Detections, b: Detections, size: Sequence[int],
                     tol: float) -> Tuple[int, float, float]:
    """Greedy one-to-one matching of two detection sets.

    Args:
        a, b: (scores [K], labels [K], xyxy boxes [K, 4]) of one image.
        size: (height, width) that normalises the boxes.
        tol: Largest score and normalised-box difference of a match.

    Returns:
        tuple: matched count, largest score and box difference among the
        matches. Near-tied scores may swap ranks, hence no rank check.
    """
    scores_a, labels_a, boxes_a = a
    scores_b, labels_b, boxes_b = b
    scale = boxes_a.new_tensor([size[1], size[0], size[1], size[0]])
    boxes_a, boxes_b = boxes_a / scale, boxes_b / scale
    used = torch.zeros(len(scores_b), dtype=torch.bool)
    matched, max_score, max_box = 0, 0.0, 0.0
    for i in range(len(scores_a)):
        candidates = ((scores_b - scores_a[i]).abs()
                      <= tol) & (labels_b == labels_a[i]) & ~used
        if not candidates.any():
            continue
        box_error = (boxes_b - boxes_a[i]).abs().max(dim=1).values
        box_error[~candidates] = float('inf')
        j = int(box_error.argmin())
        if box_error[j] > tol:
            continue
        used[j] = True
        matched += 1
        max_score = max(max_score, float((scores_b[j] - scores_a[i]).abs()))
        max_box = max(max_box, float(box_error[j]))
    return matched, max_score, max_box


def _clipped(sample) -> Detections:
    pred = sample.pred_instances
    height, width = sample.ori_shape
    boxes = pred.bboxes.clone().cpu()
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
    return pred.scores.cpu(), pred.labels.cpu(), boxes


def _run(model, data, mode):
    return model(data['inputs'], data['data_samples'], mode=mode)


def check_outputs(ours, theirs, data_ours, data_theirs,
                  tol: float = TOLERANCE) -> Dict[str, Any]:
    """Same per-layer outputs and same detections (boxes clipped for both)."""
    ours.eval()
    theirs.eval()
    with torch.no_grad():
        logits_a, boxes_a = _run(ours, data_ours, 'tensor')
        logits_b, boxes_b = _run(theirs, data_theirs, 'tensor')
        det_a = _run(ours, data_ours, 'predict')
        det_b = _run(theirs, data_theirs, 'predict')
    result = dict(tolerance=tol,
                  logits_shape=list(logits_a.shape),
                  logits_max_abs_diff=float((logits_a - logits_b).abs().max()),
                  boxes_max_abs_diff=float((boxes_a - boxes_b).abs().max()),
                  detections=[])
    ok = (logits_a.shape == logits_b.shape
          and result['logits_max_abs_diff'] <= tol
          and result['boxes_max_abs_diff'] <= tol)
    for sample_a, sample_b in zip(det_a, det_b):
        pred_b = sample_b.pred_instances
        matched, max_score, max_box = match_detections(
            _clipped(sample_a),
            (pred_b.scores.cpu(), pred_b.labels.cpu(), pred_b.bboxes.cpu()),
            sample_a.ori_shape, tol)
        count = len(sample_a.pred_instances.scores)
        result['detections'].append(
            dict(count=count,
                 matched=matched,
                 max_score_diff=max_score,
                 max_box_diff_normalised=max_box))
        ok = ok and count == len(pred_b.scores) and matched == count
    result['ok'] = bool(ok)
    return result
