"""Datasets and transforms of the ``mmdet_conddetr`` scope.

``RobustCocoDataset`` and ``RobustLoadImageFromFile``: mmdet's
``CocoDataset`` and mmcv's ``LoadImageFromFile`` with clear data errors and
counted repairs (see :mod:`.coco` and :mod:`.transforms`); the COCO configs
name them. ``DETRResize``: mmdet's ``Resize`` with the official size rule and
PIL's bilinear filter (see :mod:`.resize`).
"""
from .coco import RobustCocoDataset
from .resize import DETRResize, detr_output_size
from .transforms import RobustLoadImageFromFile, skipped_images, to_bgr_uint8

__all__ = [
    'RobustCocoDataset', 'RobustLoadImageFromFile', 'DETRResize',
    'detr_output_size', 'skipped_images', 'to_bgr_uint8'
]
