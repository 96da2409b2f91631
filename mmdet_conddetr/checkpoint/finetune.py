"""Start a model for another number of classes from a COCO checkpoint.

Fine-tuning a published COCO model (80 class rows, or 91 indexed by COCO
category id in the official and Hugging Face layouts) on a dataset of ``N``
classes loads every weight but the class head, whose rows mean other
classes. mmengine's loader with ``strict=False`` would skip the head with a
"size mismatch" warning and leave whatever the model holds; here the head is
replaced explicitly, in the state dict about to be loaded, by a freshly
initialised one -- the weight as ``nn.Linear`` initialises it, the bias at
the focal-loss prior (:data:`PRIOR_BIAS`, probability 0.01), exactly what
``ConditionalDETRHead.init_weights`` does -- so the load is exact (nothing
else may differ) and the result does not depend on whether the model was
initialised before loading.

The engine's ``CheckpointMatchHook`` decides when this is allowed (training
from ``load_from``, not resuming, not testing); this module only builds the
state dict and the one log line that says what happened.
"""
from collections import OrderedDict
from typing import Mapping, Tuple

import torch
from torch import Tensor, nn

from .coco_classes import PRIOR_BIAS
from .layouts.native import CLASS_BIAS, CLASS_WEIGHT

__all__ = ['fresh_class_head', 'with_fresh_class_head', 'fine_tune_note']


def fresh_class_head(like_weight: Tensor) -> Tuple[Tensor, Tensor]:
    """A newly initialised class head shaped like ``like_weight``.

    Args:
        like_weight (Tensor): The model's class weight, [N, C].

    Returns:
        tuple[Tensor, Tensor]: Weight [N, C] (``nn.Linear``'s init) and bias
        [N] (:data:`PRIOR_BIAS`), with ``like_weight``'s dtype and device.
    """
    rows, features = like_weight.shape
    layer = nn.Linear(features, rows)
    nn.init.constant_(layer.bias, PRIOR_BIAS)
    kwargs = dict(dtype=like_weight.dtype, device=like_weight.device)
    return layer.weight.detach().to(**kwargs), layer.bias.detach().to(**kwargs)


def with_fresh_class_head(state_dict: Mapping[str, Tensor],
                          target: Mapping[str, Tensor]
                          ) -> 'OrderedDict[str, Tensor]':
    """``state_dict`` (our layout) with its class head replaced by a fresh
    one of the size ``target`` (the model's state dict) has."""
    weight, bias = fresh_class_head(target[CLASS_WEIGHT])
    out = OrderedDict(state_dict)
    out[CLASS_WEIGHT] = weight
    out[CLASS_BIAS] = bias
    return out


def fine_tune_note(name: str, checkpoint_rows: int, model_rows: int,
                   loaded: int, source: str) -> str:
    """The one log line saying which keys were re-initialised and why.

    Args:
        name: The checkpoint, as the user named it.
        checkpoint_rows: Class rows in the checkpoint (80, 91...).
        model_rows: The model's ``bbox_head.num_classes``.
        loaded: Number of tensors loaded from the checkpoint.
        source: The checkpoint's layout (see :data:`..SOURCES`).
    """
    converted = '' if source == 'mmdet_conddetr' else \
        f', converted from the {source} layout'
    return (f'fine-tuning from {name}: {CLASS_WEIGHT} and {CLASS_BIAS} '
            f're-initialised (bias = prior-probability bias '
            f'{PRIOR_BIAS:.3f}, as the head initialises it) because the '
            f'checkpoint has {checkpoint_rows} class rows and the model '
            f'{model_rows} classes (model.bbox_head.num_classes='
            f'{model_rows}); the other {loaded} weights are loaded from '
            f'the checkpoint{converted}.')
