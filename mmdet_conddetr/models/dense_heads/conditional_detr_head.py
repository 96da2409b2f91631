"""Prediction head and losses of Conditional DETR.

Follows the official ``ConditionalDETR`` / ``SetCriterion`` / ``PostProcess``.
Differences from MMDetection 3.3's ``ConditionalDETRHead`` (a ``DETRHead``):

* all decoder layers and images are matched in one batched assigner call
  (:class:`BatchedHungarianAssigner`) and their losses computed with tensor
  operations, not a Python loop over images;
* the box MLP's last layer starts at zero and the class bias at the 0.01
  prior, as the official model (mmdet initialises only the bias);
* the losses need no host sync of their own: the box count stays a
  tensor, and the matches of all layers reach the device in one copy;
* the outputs and the losses are fp32 under AMP (below);
* test-time boxes are not clipped to the image, as the official
  ``PostProcess`` (mmdet clips them).

The loss normalisation is the official one: every term of every layer is
divided by the number of ground-truth boxes averaged over all ranks, clamped
at 1 (the official focal loss's ``mean over queries * num_queries`` is that
same sum). That count is all-reduced *before* the matching, which raises on
non-finite predictions: a rank that fails there has then made the same
collective calls as the others, and ``NonFiniteLossHook`` stops (or skips)
every rank together.

**Precision.** The official model trains in fp32. Under fp16/bf16 autocast
the two linear branches run in half precision (that is where the time goes);
everything after them is pinned to fp32, as are the matching cost (see
:class:`BatchedHungarianAssigner`) and the reference points' sigmoid in the
decoder:

* class logits are cast to fp32 and the focal loss runs with autocast off:
  on CUDA mmdet calls mmcv's kernel, which in fp16 takes ``log(0)`` for any
  logit below about -17.3 or above 8.3 (NaN loss), and has no bf16 kernel;
* ``inverse_sigmoid`` of the reference points and the box sigmoid: in fp16
  the backward of ``log(x / (1 - x))`` overflows from a reference-head
  output of ~5.7 on (GradScaler would skip step after step), and above
  ~8.3 the reference rounds to 1; fp32 keeps the official values and
  gradients;
* L1 and GIoU (areas, unions, hull) on fp32 boxes: GIoU's ``eps=1e-6`` and
  the products of small widths are below fp16's normal range;
* the box count normaliser is an fp32 tensor.
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
            tuple[Tensor, Tensor]: fp32 logits [L, B, Q, C] and normalised
            cxcywh boxes [L, B, Q, 4], whatever the autocast state.
        """
        # fp32 from here on (a no-op without autocast): see the module doc.
        box_logits = self.fc_reg(hidden_states).float()
        center = box_logits[..., :2] + inverse_sigmoid(references.float())
        boxes = torch.cat([center, box_logits[..., 2:]], dim=-1).sigmoid()
        return self.fc_cls(hidden_states).float(), boxes

    def loss(self, hidden_states: Tensor, references: Tensor,
             batch_data_samples: SampleList) -> Dict[str, Tensor]:
        """Losses of every decoder layer; the last layer's keys are plain
        (``loss_cls``), the others prefixed ``d0.`` ... ``d{L-2}.``."""
        all_logits, all_boxes = self(hidden_states, references)
        gt_labels, gt_boxes = self._normalised_targets(batch_data_samples)
        counts = [len(labels) for labels in gt_labels]
        # Before the matching (see the module doc); ``new_full`` fills on
        # the device, no host->device copy.
        num_boxes = reduce_mean(all_logits.new_full(
            (), float(sum(counts)))).clamp(min=1)
        matches = self.assigner.assign(all_logits.detach(), all_boxes.detach(),
                                       gt_labels, gt_boxes)
        index = self._match_index(matches, counts, all_logits.device)
        labels, boxes = torch.cat(gt_labels), torch.cat(gt_boxes)
        losses = {}
        last = len(all_logits) - 1
        with torch.autocast(all_logits.device.type, enabled=False):
            for layer in range(len(all_logits)):
                prefix = '' if layer == last else f'd{layer}.'
                terms = self._layer_loss(all_logits[layer], all_boxes[layer],
                                         index[layer], labels, boxes,
                                         num_boxes)
                losses.update(
                    {prefix + name: value for name, value in terms.items()})
        return losses

    @staticmethod
    def _match_index(matches, counts: List[int], device) -> Tensor:
        """The assigner's matches of every layer as one device tensor.

        Returns:
            Tensor: [L, 3, G] int64, G = total ground truths: image, query
            and ground-truth index (into the batch's concatenated ground
            truths) of every match, copied to ``device`` in one transfer.
        """
        total = sum(counts)
        if total == 0:
            return torch.empty((len(matches), 3, 0), dtype=torch.int64,
                               device=device)
        offsets = [sum(counts[:image]) for image in range(len(counts))]
        image = torch.repeat_interleave(
            torch.arange(len(counts)), torch.tensor(counts))
        rows = []
        for row in matches:
            queries = torch.cat([query for query, _ in row])
            gts = torch.cat([gt + offset for (_, gt), offset in
                             zip(row, offsets)])
            rows.append(torch.stack([image, queries, gts]))
        index = torch.stack(rows)
        if device.type == 'cuda':
            index = index.pin_memory()  # so the copy can be asynchronous
        return index.to(device, non_blocking=True)

    def _normalised_targets(
            self, batch_data_samples: SampleList
    ) -> Tuple[List[Tensor], List[Tensor]]:
        """Labels and cxcywh boxes normalised by each image's unpadded size."""
        labels, boxes = [], []
        for sample in batch_data_samples:
            height, width = sample.img_shape
            instances = sample.gt_instances
            labels.append(instances.labels)
            normalised = bbox_xyxy_to_cxcywh(instances.bboxes.float())
            # Python scalars: no host->device copy of a scale tensor.
            normalised[:, 0::2] /= width
            normalised[:, 1::2] /= height
            boxes.append(normalised)
        return labels, boxes

    def _layer_loss(self, logits: Tensor, boxes: Tensor, index: Tensor,
                    gt_labels: Tensor, gt_boxes: Tensor,
                    num_boxes: Tensor) -> Dict[str, Tensor]:
        """Losses of one layer.

        Args:
            logits (Tensor): [B, Q, C] fp32 class logits.
            boxes (Tensor): [B, Q, 4] fp32 normalised cxcywh boxes.
            index (Tensor): [3, G] image, query and ground-truth index of
                every match (see :meth:`_match_index`).
            gt_labels (Tensor): [G] labels of the batch.
            gt_boxes (Tensor): [G, 4] normalised cxcywh boxes of the batch.
            num_boxes (Tensor): the loss normaliser, a 0-dim fp32 tensor.
        """
        batch, num_queries, num_classes = logits.shape
        image_index, query_index, gt_index = index
        # Unmatched queries are background: label index ``num_classes``.
        targets = torch.full((batch, num_queries), num_classes,
                             dtype=torch.long, device=logits.device)
        targets[image_index, query_index] = gt_labels[gt_index]
        loss_cls = self.loss_cls(
            logits.reshape(-1, num_classes),
            targets.reshape(-1),
            avg_factor=num_boxes)
        matched_gt_boxes = gt_boxes[gt_index]
        matched_boxes = boxes[image_index, query_index]
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
