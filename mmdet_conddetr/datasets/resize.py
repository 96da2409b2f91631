"""Resize with the official Conditional DETR / DETR size rule and PIL's
bilinear filter.

Registered in the ``mmdet_conddetr`` scope as ``DETRResize``. It is mmdet's
``Resize`` (boxes, masks, segmentation maps and the homography matrix follow
the image the same way) with two differences, both taken from the official
``resize`` of ``datasets/transforms.py`` (Atten4Vis/ConditionalDETR, copied
from DETR):

* **Size rule.** An ``int`` scale is the target short side, an optional
  ``max_size`` caps the long side, and the long side is *truncated*
  (``int(size * long / short)``); mmcv's ``rescale_size`` rounds it and
  caps both sides, so a 640x480 image becomes 1067x800 there and 1066x800
  here (for images of 50..640 px, the long side is 1 px longer there for
  49 % of sizes, and -6..+6 px off where the cap applies). With the cap,
  the short side becomes ``round(max_size * short / long)`` and the long side
  is again truncated, so it can exceed ``max_size`` by one pixel, as
  officially. A ``(w, h)`` tuple is an exact output size.
* **Interpolation.** The official code resizes a PIL image with
  ``Image.BILINEAR`` (whose filter widens when shrinking, i.e. it
  antialiases); ``mmcv.imresize(..., backend='pillow')`` is that same call,
  so ``backend='pillow'`` is the default here (mmdet: cv2, which aliases when
  shrinking and differs by up to one grey level when enlarging).

``scale_factor`` is new/old size per axis, so boxes scale as officially and
predictions map back to the original image exactly. Usable inside mmcv's
``RandomChoiceResize`` (``resize_type='DETRResize'``, ``max_size=...``, a
list of short sides as ``scales``), which sets ``scale`` before each call.
"""
from typing import Optional, Tuple, Union

from mmdet.datasets.transforms import Resize
from mmdet.structures.bbox import autocast_box_type

from mmdet_conddetr.registry import TRANSFORMS
from mmdet_conddetr.size_rule import get_size_with_aspect_ratio

__all__ = ['DETRResize', 'detr_output_size']


def detr_output_size(width: int, height: int, size: Union[int, Tuple[int,
                                                                     int]],
                     max_size: Optional[int]) -> Tuple[int, int]:
    """Output ``(width, height)`` of the official resize
    (:func:`mmdet_conddetr.size_rule.get_size_with_aspect_ratio`), or an
    exact size.

    Args:
        width (int): Input image width.
        height (int): Input image height.
        size (int | tuple[int, int]): Target short side, or an exact
            ``(w, h)``.
        max_size (int, optional): Cap of the long side (``None``: uncapped).
            Ignored for an exact size.

    Returns:
        tuple[int, int]: ``(new_width, new_height)``.
    """
    if isinstance(size, (tuple, list)):
        return int(size[0]), int(size[1])
    return get_size_with_aspect_ratio(width, height, size, max_size)


@TRANSFORMS.register_module()
class DETRResize(Resize):
    """mmdet's ``Resize`` with the official size rule and PIL bilinear.

    Args:
        scale (int | tuple[int, int]): Target short side, or an exact output
            ``(w, h)``.
        max_size (int, optional): Cap of the long side for an ``int`` scale.
            Defaults to None (uncapped), as the official ``resize``.
        clip_object_border (bool): Clip boxes to the resized image (mmdet's
            default). The official code clamps boxes to the image when it
            loads them; clipping after each resize gives the same boxes.
            Defaults to True.
        backend (str): ``'pillow'`` (official) or ``'cv2'``. The pillow
            backend needs a uint8 image (``to_float32=False`` in loading).
        interpolation (str): Defaults to ``'bilinear'``.
    """

    def __init__(self,
                 scale: Union[int, Tuple[int, int]],
                 max_size: Optional[int] = None,
                 clip_object_border: bool = True,
                 backend: str = 'pillow',
                 interpolation: str = 'bilinear') -> None:
        # keep_ratio=False: the size is computed here, mmdet then resizes
        # image, masks and segmentation maps to exactly that size.
        super().__init__(
            scale=scale,
            keep_ratio=False,
            clip_object_border=clip_object_border,
            backend=backend,
            interpolation=interpolation)
        self.scale = scale  # mmdet turns an int into (s, s); keep the int
        self.max_size = max_size

    @autocast_box_type()
    def transform(self, results: dict) -> dict:
        """Resize ``img`` (and boxes, masks, segmentation, homography).

        Args:
            results (dict): With ``img`` [H, W, C] uint8.

        Returns:
            dict: ``img``, ``img_shape``, ``scale`` (w, h), ``scale_factor``
            (new/old w, new/old h) and the annotations, updated.
        """
        height, width = results['img'].shape[:2]
        results['scale'] = detr_output_size(width, height, self.scale,
                                            self.max_size)
        self._resize_img(results)
        self._resize_bboxes(results)
        self._resize_masks(results)
        self._resize_seg(results)
        self._record_homography_matrix(results)
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(scale={self.scale}, '
                f'max_size={self.max_size}, '
                f'clip_object_border={self.clip_object_border}, '
                f'backend={self.backend}, '
                f'interpolation={self.interpolation})')
