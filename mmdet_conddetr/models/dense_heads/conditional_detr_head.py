"""Prediction head and losses of Conditional DETR.

Follows the official ``ConditionalDETR`` / ``SetCriterion`` / ``PostProcess``.
Differences from MMDetection 3.3's ``ConditionalDETRHead`` (a ``DETRHead``):

* all decoder layers and images are matched in one batched assigner call
  (:class:`BatchedHungarianAssigner`) and their losses computed with tensor
  operations, not a Python loop over images;
* the box MLP's last layer starts at zero and the class bias at the 0.01
  prior, as the official model (mmdet initialises only the bias);
* box losses are computed in fp32 under AMP;
* test-time boxes are not clipped to the image, as the official
  ``PostProcess`` (mmdet clips them).

The loss normalisation is the official one: every term of every layer is
divided by the number of ground-truth boxes averaged over all ranks, clamped
at 1 (the official focal loss's ``mean over queries * num_queries`` is that
same sum).
"""
import math
from typing import Dict, List, Tuple

import torch
from mmdet.models.layers.transformer.utils import MLP, inverse_sigmoid
from mmdet.structures import SampleList
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy, bbox_xyxy_to_cxcywh
from mmdet.utils import InstanceList, reduce_mean
from mmengine.model import BaseModule
from mmengine.structures import InstanceData
from torch import Tensor, nn

from mmdet_conddetr.registry import MODELS, TASK_UTILS


@MODELS.register_module()
class ConditionalDETRHead(BaseModule):
    """Focal class branch and box MLP on every decoder layer's output.

    Args:
        num_classes (int): Number of object classes (no background class).
        embed_dims (int): Decoder width. Defaults to 256.
        loss_cls (dict): Focal classification loss.
        loss_bbox (dict): L1 loss on normalised cxcywh boxes.
        loss_iou (dict): GIoU loss.
        train_cfg (dict): ``assigner`` config.
        test_cfg (dict): ``max_per_img``, detections kept per image.
        init_cfg (dict, optional): mmengine init config.
    """

    def __init__(self,
                 num_classes: int,
                 embed_dims: int = 256,
                 loss_cls: dict = dict(
                     type='mmdet.FocalLoss',
                     use_sigmoid=True,
                     gamma=2.0,
                     alpha=0.25,
                     loss_weight=2.0),
                 loss_bbox: dict = dict(type='mmdet.L1Loss', loss_weight=5.0),
                 loss_iou: dict = dict(type='mmdet.GIoULoss', loss_weight=2.0),
                 train_cfg: dict = dict(
                     assigner=dict(type='BatchedHungarianAssigner')),
                 test_cfg: dict = dict(max_per_img=100),
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.num_classes = num_classes
        self.fc_cls = nn.Linear(embed_dims, num_classes)
        self.fc_reg = MLP(embed_dims, embed_dims, 4, 3)
        self.loss_cls = MODELS.build(loss_cls)
        self.loss_bbox = MODELS.build(loss_bbox)
        self.loss_iou = MODELS.build(loss_iou)
        self.assigner = TASK_UTILS.build(train_cfg['assigner'])
        self.test_cfg = test_cfg

    def init_weights(self) -> None:
        super().init_weights()
        prior = 0.01
        nn.init.constant_(self.fc_cls.bias, -math.log((1 - prior) / prior))
        nn.init.zeros_(self.fc_reg.layers[-1].weight)
        nn.init.zeros_(self.fc_reg.layers[-1].bias)

    def forward(self, hidden_states: Tensor,
                references: Tensor) -> Tuple[Tensor, Tensor]:
        """Class logits and boxes of every layer.

        Args:
            hidden_states (Tensor): Decoder outputs, [L, B, Q, d].
            references (Tensor): Reference points, [B, Q, 2] in 0..1.

        Returns:
            tuple[Tensor, Tensor]: Logits [L, B, Q, C] and normalised
            cxcywh boxes [L, B, Q, 4].
        """
        box_logits = self.fc_reg(hidden_states)
        center = box_logits[..., :2] + inverse_sigmoid(references)
        boxes = torch.cat([center, box_logits[..., 2:]], dim=-1).sigmoid()
        return self.fc_cls(hidden_states), boxes

    def loss(self, hidden_states: Tensor, references: Tensor,
             batch_data_samples: SampleList) -> Dict[str, Tensor]:
        """Losses of every decoder layer; the last layer's keys are plain
        (``loss_cls``), the others prefixed ``d0.`` ... ``d{L-2}.``."""
        all_logits, all_boxes = self(hidden_states, references)
        gt_labels, gt_boxes = self._normalised_targets(batch_data_samples)
        matches = self.assigner.assign(all_logits.detach(), all_boxes.detach(),
                                       gt_labels, gt_boxes)
        total = sum(len(labels) for labels in gt_labels)
        num_boxes = reduce_mean(all_logits.new_tensor(float(total)))
        num_boxes = num_boxes.clamp(min=1).item()
        losses = {}
        last = len(all_logits) - 1
        for layer, layer_matches in enumerate(matches):
            prefix = '' if layer == last else f'd{layer}.'
            terms = self._layer_loss(all_logits[layer], all_boxes[layer],
                                     layer_matches, gt_labels, gt_boxes,
                                     num_boxes)
            losses.update({prefix + name: value for name, value in terms.items()})
        return losses

    def _normalised_targets(
            self, batch_data_samples: SampleList
    ) -> Tuple[List[Tensor], List[Tensor]]:
        """Labels and cxcywh boxes normalised by each image's unpadded size."""
        labels, boxes = [], []
        for sample in batch_data_samples:
            height, width = sample.img_shape
            instances = sample.gt_instances
            scale = instances.bboxes.new_tensor([width, height, width, height])
            labels.append(instances.labels)
            boxes.append(bbox_xyxy_to_cxcywh(instances.bboxes) / scale)
        return labels, boxes

    def _layer_loss(self, logits: Tensor, boxes: Tensor, matches,
                    gt_labels: List[Tensor], gt_boxes: List[Tensor],
                    num_boxes: float) -> Dict[str, Tensor]:
        """Losses of one layer. logits [B, Q, C], boxes [B, Q, 4]."""
        batch, num_queries, num_classes = logits.shape
        image_index = torch.cat([
            torch.full_like(queries, image)
            for image, (queries, _) in enumerate(matches)
        ]).to(logits.device)
        query_index = torch.cat([queries for queries, _ in matches]).to(
            logits.device)
        matched_labels = torch.cat([
            labels[gts.to(labels.device)]
            for labels, (_, gts) in zip(gt_labels, matches)
        ])
        matched_gt_boxes = torch.cat([
            gt[gts.to(gt.device)] for gt, (_, gts) in zip(gt_boxes, matches)
        ]).float()
        # Unmatched queries are background: label index ``num_classes``.
        targets = logits.new_full((batch, num_queries), num_classes,
                                  dtype=torch.long)
        targets[image_index, query_index] = matched_labels
        loss_cls = self.loss_cls(
            logits.reshape(-1, num_classes),
            targets.reshape(-1),
            avg_factor=num_boxes)
        matched_boxes = boxes[image_index, query_index].float()
        loss_bbox = self.loss_bbox(
            matched_boxes, matched_gt_boxes, avg_factor=num_boxes)
        loss_iou = self.loss_iou(
            bbox_cxcywh_to_xyxy(matched_boxes),
            bbox_cxcywh_to_xyxy(matched_gt_boxes),
            avg_factor=num_boxes)
        return dict(loss_cls=loss_cls, loss_bbox=loss_bbox, loss_iou=loss_iou)

    def predict(self,
                hidden_states: Tensor,
                references: Tensor,
                batch_data_samples: SampleList,
                rescale: bool = True) -> InstanceList:
        """Top-k detections over all query × class scores of the last layer.

        Returns:
            list[InstanceData]: Per image ``scores`` [K], ``labels`` [K],
            ``bboxes`` [K, 4] (xyxy, in original-image pixels when
            ``rescale``) and the ``query_index`` [K] each detection came
            from, K = min(max_per_img, Q * C).
        """
        logits, boxes = self(hidden_states[-1:], references)
        logits, boxes = logits[0], boxes[0]
        batch, num_queries, num_classes = logits.shape
        k = min(self.test_cfg.get('max_per_img', 100), num_queries * num_classes)
        scores, flat_index = logits.sigmoid().flatten(1).topk(k, dim=1)
        query_index = flat_index // num_classes
        labels = flat_index % num_classes
        picked = boxes.gather(1, query_index[..., None].expand(-1, -1, 4))
        results = []
        for image, sample in enumerate(batch_data_samples):
            # Normalised boxes times the original size, as the official
            # PostProcess: the same as un-doing the resize, in one step.
            height, width = sample.ori_shape if rescale else sample.img_shape
            xyxy = bbox_cxcywh_to_xyxy(picked[image]) * picked.new_tensor(
                [width, height, width, height])
            results.append(
                InstanceData(
                    scores=scores[image],
                    labels=labels[image],
                    bboxes=xyxy,
                    query_index=query_index[image]))
        return results
