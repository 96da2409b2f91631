"""Image loading that skips unreadable files and always yields 3-channel
8-bit images.

Registered in the ``mmdet_conddetr`` scope as ``RobustLoadImageFromFile``
and, in that scope, also under mmcv's name ``LoadImageFromFile``: mmdet's
``DetInferencer`` finds the loader of a test pipeline by that name, so the
COCO test pipelines use it and still get this class when the config's
default scope (``mmdet_conddetr``) is in force. Same arguments and, for
readable images, the same output as mmcv's transform.

The COCO configs decode as the official code (``Image.open(f).convert
('RGB')``): ``imdecode_backend='pillow'`` and
``color_type='color_ignore_orientation'`` (mmcv's ``'color'`` rotates by the
EXIF orientation tag, which swaps ``ori_shape`` and puts every box in the
wrong frame for a tagged file).

* A missing, empty, truncated or otherwise undecodable image is *skipped*:
  the transform logs a warning naming the file and the running count of
  skipped images and returns ``None``; a training dataset then draws another
  image (mmengine's ``BaseDataset`` refetch), while our ``CocoDataset``
  raises an error naming the file at test time. mmcv's transform fails with
  ``AssertionError: failed to load image`` (OpenCV) or ``OSError`` (Pillow)
  and stops the run.
* With a colour ``color_type`` (``'color'``, the default, or
  ``'color_ignore_orientation'``) the image is 3-channel uint8
  BGR (or RGB with ``channel_order='rgb'`` decoding): OpenCV/Pillow decoding
  already turns grayscale, RGBA and 16-bit files into that; anything else
  that slips through (2-D or 1-/4-channel arrays, 16-bit or float data from
  another decoder) is converted here.
* ``max_cached_images=N`` (default 0, off) keeps the last N decoded images
  of the process in memory, for small datasets read every epoch (the CPU
  demo: decoding is about half of its data time). A cached file that changes
  on disk is not re-read; every call returns its own copy.
"""
from collections import OrderedDict
from typing import Dict, Optional

import cv2
import numpy as np
from mmcv.transforms import LoadImageFromFile
from mmengine.logging import print_log

from mmdet_conddetr.registry import TRANSFORMS

__all__ = ['RobustLoadImageFromFile', 'to_bgr_uint8', 'skipped_images']

# path -> reason, for every image this process skipped
_SKIPPED: Dict[str, str] = {}


def skipped_images() -> Dict[str, str]:
    """Images skipped so far in this process: path -> reason."""
    return dict(_SKIPPED)


def to_bgr_uint8(img: np.ndarray) -> np.ndarray:
    """3-channel uint8 version of a decoded image (channel order kept; an
    alpha channel is dropped; 16-bit data is scaled to 8 bits)."""
    if img.dtype == np.uint16:
        img = (img.astype(np.float32) / 257.0).round().astype(np.uint8)
    elif img.dtype != np.uint8:
        scale = 255.0 if img.size and float(np.nanmax(img)) <= 1.0 else 1.0
        img = np.clip(np.nan_to_num(img.astype(np.float32)) * scale, 0,
                      255).round().astype(np.uint8)
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    elif img.ndim == 3 and img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = np.ascontiguousarray(img[:, :, :3])
    return img


_COLOR_TYPES = ('color', 'color_ignore_orientation')


@TRANSFORMS.register_module(name=['RobustLoadImageFromFile',
                                  'LoadImageFromFile'])
class RobustLoadImageFromFile(LoadImageFromFile):
    """mmcv's ``LoadImageFromFile`` that skips unreadable images (with a
    counted warning) and guarantees 3-channel uint8 colour images.

    Args:
        max_cached_images (int): Decoded images kept in memory (least
            recently used dropped first); 0 keeps none.
        **kwargs: mmcv's ``LoadImageFromFile`` arguments.
    """

    def __init__(self, max_cached_images: int = 0, **kwargs):
        super().__init__(**kwargs)
        if max_cached_images < 0:
            raise ValueError('max_cached_images must be >= 0, got '
                             f'{max_cached_images}')
        self.max_cached_images = max_cached_images
        self._cache: 'OrderedDict[str, np.ndarray]' = OrderedDict()

    def transform(self, results: dict) -> Optional[dict]:
        path = results['img_path']
        cached = self._cache.get(path)
        if cached is not None:
            self._cache.move_to_end(path)
            results['img'] = cached.copy()
            results['img_shape'] = results['ori_shape'] = cached.shape[:2]
            return results
        out = self._load(results)
        if out is not None and self.max_cached_images:
            self._cache[path] = out['img'].copy()
            if len(self._cache) > self.max_cached_images:
                self._cache.popitem(last=False)
        return out

    def _load(self, results: dict) -> Optional[dict]:
        path = results['img_path']
        try:
            out = super().transform(results)
        except FileNotFoundError:
            return self._skip(path, 'file not found')
        except AssertionError:  # mmcv: "failed to load image" (cv2 -> None)
            return self._skip(path, 'cannot be decoded: corrupt, truncated '
                              'or not an image')
        except (OSError, ValueError, cv2.error) as error:
            return self._skip(path, f'cannot be decoded: corrupt, truncated '
                              f'or not an image ({type(error).__name__}: '
                              f'{error})')
        if out is None:  # ignore_empty=True
            return self._skip(path, 'cannot be read')
        if self.color_type in _COLOR_TYPES:
            img = out['img']
            fixed = to_bgr_uint8(img) if self.to_float32 is False else img
            if fixed is not img:
                out['img'] = fixed
                out['img_shape'] = out['ori_shape'] = fixed.shape[:2]
        return out

    @staticmethod
    def _skip(path: str, reason: str) -> None:
        first = path not in _SKIPPED
        _SKIPPED[path] = reason
        if first:
            print_log(
                f'Skipping image {path}: {reason}. {len(_SKIPPED)} '
                'unreadable image(s) skipped so far in this process; replace '
                'them or remove them from the annotation file.',
                logger='current',
                level=30)
        return None
