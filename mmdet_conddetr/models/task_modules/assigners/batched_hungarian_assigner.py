"""Hungarian matching of Conditional DETR, batched over images and layers.

Differs from mmdet's ``HungarianAssigner`` (one image per call, costs from
``match_costs`` configs, whatever dtype the head runs in):

* the cost of all images, and of all decoder layers when the head matches
  them together, is one set of tensor operations, moved to the CPU once:
  that copy is the only host sync of the matching (finiteness is checked on
  the host copy);
* it is computed in fp32 with autocast off, so half-precision rounding
  cannot change which query gets which box, and the focal cost's
  ``log(1 - p + 1e-8)`` does not underflow (``1e-8`` is 0 in fp16);
* the focal class cost uses ``eps=1e-8`` as the official matcher;
* a non-finite cost raises an error that names the offending prediction
  (class logits or boxes) and the training iteration, instead of scipy's
  "matrix contains invalid numeric entries";
* more ground truths than queries is an error that says how to fix it (the
  official matcher would silently leave boxes unmatched).
"""
from typing import List, Sequence, Tuple

import numpy as np
import torch
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy, bbox_overlaps
from mmengine.logging import MessageHub
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from mmdet_conddetr.registry import TASK_UTILS

Match = Tuple[Tensor, Tensor]


def focal_class_cost(logits: Tensor, labels: Tensor, alpha: float,
                     gamma: float, eps: float = 1e-8) -> Tensor:
    """Focal-loss matching cost. logits [..., Q, C], labels [G] -> [..., Q, G]."""
    prob = logits.sigmoid()[..., labels]
    neg = (1 - alpha) * prob**gamma * -(1 - prob + eps).log()
    pos = alpha * (1 - prob)**gamma * -(prob + eps).log()
    return pos - neg


def _current_iteration() -> str:
    hub = MessageHub.get_current_instance()
    iteration = hub.get_info('iter')
    return 'unknown' if iteration is None else str(iteration + 1)


@TASK_UTILS.register_module()
class BatchedHungarianAssigner:
    """One-to-one matching with the official Conditional DETR costs.

    Args:
        class_weight (float): Weight of the focal class cost. Defaults to 2.
        bbox_weight (float): Weight of the L1 cost on normalised cxcywh boxes.
            Defaults to 5.
        giou_weight (float): Weight of the negative GIoU cost. Defaults to 2.
        alpha (float): Focal alpha. Defaults to 0.25.
        gamma (float): Focal gamma. Defaults to 2.
    """

    def __init__(self,
                 class_weight: float = 2.0,
                 bbox_weight: float = 5.0,
                 giou_weight: float = 2.0,
                 alpha: float = 0.25,
                 gamma: float = 2.0):
        self.class_weight = class_weight
        self.bbox_weight = bbox_weight
        self.giou_weight = giou_weight
        self.alpha = alpha
        self.gamma = gamma

    @torch.no_grad()
    def cost(self, cls_logits: Tensor, boxes: Tensor, gt_labels: Tensor,
             gt_boxes: Tensor) -> Tensor:
        """Matching cost of every query against every ground truth.

        Args:
            cls_logits (Tensor): [..., Q, C] class logits.
            boxes (Tensor): [..., Q, 4] normalised cxcywh boxes.
            gt_labels (Tensor): [G] labels.
            gt_boxes (Tensor): [G, 4] normalised cxcywh boxes.

        Returns:
            Tensor: [..., Q, G] fp32 cost.
        """
        cls_logits, boxes, gt_boxes = (
            cls_logits.float(), boxes.float(), gt_boxes.float())
        with torch.autocast(boxes.device.type, enabled=False):
            class_cost = focal_class_cost(cls_logits, gt_labels, self.alpha,
                                          self.gamma)
            bbox_cost = (boxes[..., :, None, :] - gt_boxes).abs().sum(-1)
            lead = boxes.shape[:-1]
            giou = bbox_overlaps(
                bbox_cxcywh_to_xyxy(boxes.reshape(-1, 4)),
                bbox_cxcywh_to_xyxy(gt_boxes),
                mode='giou').view(*lead, -1)
            return (self.class_weight * class_cost +
                    self.bbox_weight * bbox_cost - self.giou_weight * giou)

    @torch.no_grad()
    def assign(self, cls_logits: Tensor, boxes: Tensor,
               gt_labels: Sequence[Tensor],
               gt_boxes: Sequence[Tensor]) -> List[List[Match]]:
        """Match queries to ground truths for every (group, image).

        Args:
            cls_logits (Tensor): [N, B, Q, C] logits; N groups (e.g. decoder
                layers) of B images each.
            boxes (Tensor): [N, B, Q, 4] normalised cxcywh boxes.
            gt_labels (Sequence[Tensor]): B tensors [G_b] of labels.
            gt_boxes (Sequence[Tensor]): B tensors [G_b, 4], normalised cxcywh.

        Returns:
            list[list[tuple[Tensor, Tensor]]]: ``[n][b] = (query_index,
            gt_index)``, int64 CPU tensors of length ``G_b``.

        Raises:
            FloatingPointError: the cost of some ground truth is not finite
                (checked on its host copy), naming the culprit.
        """
        num_queries = cls_logits.size(-2)
        counts = [len(labels) for labels in gt_labels]
        for image, count in enumerate(counts):
            if count > num_queries:
                raise ValueError(
                    f'Image {image} of the batch has {count} ground-truth '
                    f'boxes but the model has only {num_queries} queries, so '
                    'some boxes could never be matched. Raise '
                    '`num_queries` in the model config above the largest '
                    'number of objects per image.')
        groups, batch = cls_logits.shape[:2]
        empty = torch.empty(0, dtype=torch.int64)
        if sum(counts) == 0:
            return [[(empty, empty)] * batch for _ in range(groups)]
        cost = self.cost(cls_logits, boxes, torch.cat(list(gt_labels)),
                         torch.cat(list(gt_boxes))).cpu().numpy()
        if not np.isfinite(cost).all():  # on the host copy: no device sync
            self._raise_non_finite(cls_logits, boxes)
        per_image = np.split(cost, np.cumsum(counts)[:-1], axis=-1)
        matches = []
        for group in range(groups):
            row = []
            for image in range(batch):
                if counts[image] == 0:
                    row.append((empty, empty))
                    continue
                queries, gts = linear_sum_assignment(
                    per_image[image][group, image])
                row.append((torch.as_tensor(queries, dtype=torch.int64),
                            torch.as_tensor(gts, dtype=torch.int64)))
            matches.append(row)
        return matches

    @staticmethod
    def _raise_non_finite(cls_logits: Tensor, boxes: Tensor) -> None:
        """Name the non-finite input of a non-finite cost (only on this
        failure path does it look at the device tensors again)."""
        what = 'matching cost'
        if not torch.isfinite(cls_logits).all():
            what = 'class logits'
        elif not torch.isfinite(boxes).all():
            what = 'box predictions'
        raise FloatingPointError(
            f'Hungarian matching got non-finite {what} at iteration '
            f'{_current_iteration()}: the training diverged. Resume from '
            'the last checkpoint with a lower learning rate, or check the '
            'data for degenerate boxes.')
