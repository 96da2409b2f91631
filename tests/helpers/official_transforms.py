"""The official Conditional DETR data pipeline, re-implemented for tests.

Written from Atten4Vis/ConditionalDETR ``datasets/coco.py``
(``CocoDetection`` + ``ConvertCocoPolysToMask``) and ``datasets/transforms.py``
(``hflip``, ``resize``, ``crop``, ``ToTensor``, ``Normalize``), on PIL images
and float32 torch tensors, without torchvision and without any code of the
package under test. The random choices are arguments, so a test can force
them.
"""
import math
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
SHORT_SIDES = [480, 512, 544, 576, 608, 640, 672, 704, 736, 768, 800]


def load(path: str) -> Image.Image:
    """torchvision's ``CocoDetection._load_image``: no EXIF rotation."""
    return Image.open(path).convert('RGB')


def prepare(image: Image.Image, annotations: List[dict]) -> dict:
    """``ConvertCocoPolysToMask`` (boxes only): drop crowd, xywh -> xyxy in
    float32, clamp to the image, keep boxes with positive width and height."""
    width, height = image.size
    annotations = [a for a in annotations if not a.get('iscrowd', 0)]
    boxes = torch.as_tensor([a['bbox'] for a in annotations],
                            dtype=torch.float32).reshape(-1, 4)
    boxes[:, 2:] += boxes[:, :2]
    boxes[:, 0::2].clamp_(min=0, max=width)
    boxes[:, 1::2].clamp_(min=0, max=height)
    labels = torch.tensor([a['category_id'] for a in annotations],
                          dtype=torch.int64)
    keep = (boxes[:, 3] > boxes[:, 1]) & (boxes[:, 2] > boxes[:, 0])
    return dict(boxes=boxes[keep], labels=labels[keep])


def output_size(width: int, height: int, size: int,
                max_size: Optional[int]) -> Tuple[int, int]:
    """``get_size_with_aspect_ratio``, returned as (width, height)."""
    short, long = min(width, height), max(width, height)
    if max_size is not None and long / short * size > max_size:
        size = int(round(max_size * short / long))
    if short == size:
        return width, height
    scaled_long = int(size * long / short)
    return (size, scaled_long) if width < height else (scaled_long, size)


def hflip(image: Image.Image, target: dict) -> Tuple[Image.Image, dict]:
    width = image.size[0]
    boxes = target['boxes'][:, [2, 1, 0, 3]] * torch.as_tensor(
        [-1, 1, -1, 1]) + torch.as_tensor([width, 0, width, 0])
    return image.transpose(Image.FLIP_LEFT_RIGHT), dict(target, boxes=boxes)


def resize(image: Image.Image, target: Optional[dict], size: int,
           max_size: Optional[int] = None) -> Tuple[Image.Image, dict]:
    new_size = output_size(*image.size, size, max_size)
    resized = image.resize(new_size, Image.BILINEAR)
    if target is None:
        return resized, None
    ratio_w = resized.size[0] / image.size[0]
    ratio_h = resized.size[1] / image.size[1]
    boxes = target['boxes'] * torch.as_tensor(
        [ratio_w, ratio_h, ratio_w, ratio_h])
    return resized, dict(target, boxes=boxes)


def crop(image: Image.Image, target: dict,
         region: Sequence[int]) -> Tuple[Image.Image, dict]:
    """``crop`` with region (top, left, height, width)."""
    top, left, height, width = region
    cropped = image.crop((left, top, left + width, top + height))
    boxes = target['boxes'] - torch.as_tensor([left, top, left, top])
    boxes = torch.min(boxes.reshape(-1, 2, 2),
                      torch.as_tensor([width, height], dtype=torch.float32))
    boxes = boxes.clamp(min=0)
    keep = torch.all(boxes[:, 1, :] > boxes[:, 0, :], dim=1)
    return cropped, dict(
        target, boxes=boxes.reshape(-1, 4)[keep],
        labels=target['labels'][keep])


def to_input(image: Image.Image) -> torch.Tensor:
    """``ToTensor`` + ``Normalize``: [3, H, W] float32."""
    tensor = torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255
    mean = torch.tensor(MEAN).view(3, 1, 1)
    std = torch.tensor(STD).view(3, 1, 1)
    return (tensor - mean) / std


def eval_input(path: str) -> torch.Tensor:
    """``make_coco_transforms('val')`` applied to a file."""
    image, _ = resize(load(path), None, 800, 1333)
    return to_input(image)


def mmcv_rescale_size(width: int, height: int, scale=(1333, 800)):
    """mmcv's ``rescale_size`` (keep_ratio), for the before/after checks."""
    factor = min(max(scale) / max(width, height),
                 min(scale) / min(width, height))
    return (int(math.floor(width * factor + 0.5)),
            int(math.floor(height * factor + 0.5)))
