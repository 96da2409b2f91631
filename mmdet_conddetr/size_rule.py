"""The official DETR / Conditional DETR resize rule, written once.

``get_size_with_aspect_ratio`` of the official ``datasets/transforms.py``
(Atten4Vis/ConditionalDETR, copied from DETR): the short side becomes
``size``; when the long side would then exceed ``max_size``, ``size`` shrinks
to ``round(max_size * short / long)``. The long side is truncated (``int``),
not rounded as mmcv's ``rescale_size`` does, so a 640x480 image becomes
1066x800 (mmcv: 1067x800) and a capped long side can be ``max_size + 1``.

Two modules use it: :mod:`mmdet_conddetr.datasets.resize` (``DETRResize``,
training and testing) and :mod:`mmdet_conddetr.deploy.runtime` (ONNX Runtime
inference). It is a leaf in pure Python that imports nothing, because the
runtime is also loaded by file path on a machine without torch or mmdet
(``tools/deployment/onnx_inference.py``) and then loads this file the same
way.
"""
from typing import Optional, Tuple

__all__ = ['get_size_with_aspect_ratio']


def get_size_with_aspect_ratio(width: int, height: int, size: int,
                               max_size: Optional[int]) -> Tuple[int, int]:
    """Output ``(width, height)`` of the official DETR resize.

    Args:
        width (int): Input image width.
        height (int): Input image height.
        size (int): Target short side.
        max_size (int, optional): Cap of the long side (``None``: uncapped).

    Returns:
        tuple[int, int]: ``(new_width, new_height)``.
    """
    if max_size is not None:
        short, long = float(min(width, height)), float(max(width, height))
        if long / short * size > max_size:
            size = int(round(max_size * short / long))
    if (width <= height and width == size) or (height <= width
                                               and height == size):
        return width, height
    if width < height:
        return size, int(size * height / width)
    return int(size * width / height), size
