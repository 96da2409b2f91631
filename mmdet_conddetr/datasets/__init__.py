"""Datasets and transforms of the ``mmdet_conddetr`` scope.

``RobustCocoDataset`` and ``RobustLoadImageFromFile``: mmdet's
``CocoDataset`` and mmcv's ``LoadImageFromFile`` with clear data errors and
counted repairs (see :mod:`.coco` and :mod:`.transforms`). The tools use them
in place of the originals (:func:`mmdet_conddetr.engine.preflight.
use_robust_data`).
"""
from .coco import RobustCocoDataset
from .transforms import RobustLoadImageFromFile, skipped_images, to_bgr_uint8

__all__ = [
    'RobustCocoDataset', 'RobustLoadImageFromFile', 'skipped_images',
    'to_bgr_uint8'
]
