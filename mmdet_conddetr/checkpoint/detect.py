"""Find the state dict inside a checkpoint and recognise its layout.

:func:`extract_state_dict` unwraps the containers the supported repositories
write; :func:`detect_source` names the layout from the keys, and names the
architecture when the keys belong to a relative (DETR, DAB-DETR, Deformable
DETR...) or a stranger (a classifier), so the refusal says what the file is.
"""
import re
from collections import OrderedDict
from typing import Mapping, Optional

import torch

from ..errors import CheckpointFileError, UnknownLayoutError, format_keys
from .layouts import LAYOUTS

__all__ = ['extract_state_dict', 'detect_source']

# Relatives and strangers, recognised to explain a refusal. Checked before
# the supported layouts: DAB-DETR, for one, also has ``qpos_sine_proj``.
_OTHER_ARCHITECTURES = (
    (r'(^|\.)ref_anchor_head\.', 'DAB-DETR (anchor-box queries)'),
    (r'\.sampling_offsets\.', 'Deformable DETR or a derivative (deformable '
     'attention)'),
    (r'(^|\.)(label_enc|dn_query_generator)\.', 'DN-DETR/DINO (denoising '
     'queries)'),
    (r'^(detr\.)?transformer\.decoder\.layers\.\d+\.multihead_attn\.',
     'DETR (facebookresearch/detr layout)'),
    (r'^decoder\.layers\.\d+\.cross_attn\.attn\.in_proj_weight$',
     "MMDetection's DETR"),
    (r'^model\.decoder\.layers\.\d+\.encoder_attn\.(q_proj|k_proj)\.',
     'a Hugging Face DETR-family model other than Conditional DETR'),
    (r'^(rpn_head|roi_head)\.', 'a two-stage MMDetection detector'),
    (r'^fc\.weight$', 'an image classification network (ImageNet backbone '
     'weights)'),
)


def _is_tensor_like(value) -> bool:
    if isinstance(value, torch.Tensor):
        return True
    return type(value).__module__ == 'numpy' and hasattr(value, 'shape')


def extract_state_dict(checkpoint) -> 'OrderedDict[str, torch.Tensor]':
    """The state dict inside a loaded checkpoint.

    Accepts a bare state dict or the containers the supported repositories
    write: ``{'state_dict': ...}`` (mmengine/MMDetection), ``{'model': ...}``
    (official, detectron2/detrex), ``{'module': ...}``. A ``module.`` prefix
    on every key (DistributedDataParallel) is removed; numpy arrays
    (detectron2 ``.pkl`` files) become tensors.

    Raises:
        CheckpointFileError: if no state dict can be found.
    """
    if not isinstance(checkpoint, Mapping):
        raise CheckpointFileError(
            f'the checkpoint holds a {type(checkpoint).__name__}, not a dict '
            'of tensors (state dict)')
    state = checkpoint
    for _ in range(3):  # containers nest at most a couple of levels
        if state and all(_is_tensor_like(v) for v in state.values()):
            break
        for container in ('state_dict', 'model', 'module'):
            inner = state.get(container)
            if isinstance(inner, Mapping) and inner:
                state = inner
                break
        else:
            break
    if not state or not all(_is_tensor_like(v) for v in state.values()):
        top = ', '.join(repr(k) for k in list(checkpoint)[:12])
        raise CheckpointFileError(
            'no state dict found in the checkpoint: expected a dict of '
            "tensors, possibly under 'state_dict' or 'model'; its top-level "
            f'keys are {top or "(none)"}')
    out = OrderedDict()
    strip = all(key.startswith('module.') for key in state)
    for key, value in state.items():
        if strip:
            key = key[len('module.'):]
        if not isinstance(value, torch.Tensor):
            value = torch.from_numpy(value)
        out[key] = value
    return out


def detect_source(state_dict: Mapping[str, object],
                  raise_error: bool = True) -> Optional[str]:
    """Name the layout of a state dict from its keys.

    Args:
        state_dict: A state dict (or a checkpoint holding one).
        raise_error: Raise if no layout matches; otherwise return None.

    Returns:
        str | None: One of :data:`SOURCES`.

    Raises:
        UnknownLayoutError: if the keys match no supported layout, or match
            another architecture (the message names it).
    """
    try:
        keys = list(extract_state_dict(state_dict))
    except CheckpointFileError:
        if raise_error:
            raise
        return None
    for pattern, name in _OTHER_ARCHITECTURES:
        hit = next((k for k in keys if re.search(pattern, k)), None)
        if hit is not None:
            if not raise_error:
                return None
            raise UnknownLayoutError(
                f'this is not a Conditional DETR checkpoint: it looks like '
                f'{name} (key {hit!r}). Supported layouts: '
                f'{_layout_list()}.')
    found = [name for name, layout in LAYOUTS.items() if layout.matches(keys)]
    if len(found) == 1:
        return found[0]
    if not raise_error:
        return None
    if found:
        raise UnknownLayoutError(
            f'the keys match several layouts ({", ".join(found)}); pass the '
            'source explicitly')
    raise UnknownLayoutError(
        'the keys match no supported Conditional DETR layout, so this looks '
        'like a checkpoint of another architecture. Supported layouts '
        f'(and a typical key): {_layout_list(examples=True)}. First keys of '
        'this checkpoint:\n' + format_keys(keys, 12))


def _layout_list(examples: bool = False) -> str:
    items = []
    for name, layout in LAYOUTS.items():
        items.append(f'{name} ({layout.example!r})' if examples else name)
    return ', '.join(items)
