"""Convert a checkpoint to (or from) this package's layout.

The entry points are :func:`convert_state_dict` (and :func:`convert`, which
also reports what it did) and :func:`export_state_dict`; the source layout
is recognised by :func:`.detect.detect_source`. Conversion never loads
partially: every source key must be consumed by a renaming rule and every
key of the target layout filled, otherwise a :class:`KeyMismatchError`
lists both sets. The only
tensors created rather than renamed are the BN ``num_batches_tracked``
counters (zero) that frozen-BN layouts lack, and, when 80 class rows are
expanded to 91, the rows of the unused COCO ids.
"""
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Collection, List, Mapping, Optional

import torch

from .coco_classes import (NUM_COCO_CLASSES, NUM_COCO_ID_ROWS, PRIOR_BIAS,
                           expand_coco_rows, select_coco_rows)
from ..errors import KeyMismatchError, NumClassesError
from .detect import detect_source, extract_state_dict
from .layouts import LAYOUTS, get_layout
from .layouts.native import (CLASS_BIAS, CLASS_WEIGHT, NATIVE,
                             drop_num_batches_tracked, expected_keys,
                             fill_num_batches_tracked)

__all__ = [
    'ConversionResult', 'convert', 'convert_state_dict', 'export_state_dict',
    'SOURCES'
]

#: Values accepted for ``source`` (besides ``'auto'``).
SOURCES = tuple(LAYOUTS)

@dataclass
class ConversionResult:
    """What :func:`convert` produced.

    Attributes:
        state_dict: The tensors in this package's layout.
        source: Layout converted from.
        detected: Whether ``source`` was auto-detected.
        num_classes: Rows of the class head in ``state_dict``.
        source_num_classes: Rows of the class head in the source.
        filled: Keys created rather than converted (BN counters).
    """
    state_dict: 'OrderedDict[str, torch.Tensor]'
    source: str
    detected: bool
    num_classes: int
    source_num_classes: int
    filled: List[str] = field(default_factory=list)

    def describe(self) -> str:
        how = 'auto-detected' if self.detected else 'given'
        text = (f'{self.source} layout ({LAYOUTS[self.source].title}), '
                f'{how}')
        if self.num_classes != self.source_num_classes:
            text += (f'; class head {self.source_num_classes} -> '
                     f'{self.num_classes} rows by COCO category id')
        return text


def _map_classes(state_dict: 'OrderedDict',
                 num_classes: Optional[int]) -> int:
    """Map our class head (in place) to ``num_classes`` rows; return the
    number of rows it had."""
    weight, bias = state_dict.get(CLASS_WEIGHT), state_dict.get(CLASS_BIAS)
    if weight is None or bias is None:
        return -1  # reported as missing keys
    rows = int(weight.shape[0])
    if bias.shape[0] != rows:
        raise NumClassesError(
            f'the class head is inconsistent: {rows} weight rows but '
            f'{bias.shape[0]} biases')
    if num_classes is None or num_classes == rows:
        return rows
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or \
            num_classes <= 0:
        raise NumClassesError(
            f'num_classes must be a positive integer, got {num_classes!r}')
    if rows == NUM_COCO_ID_ROWS and num_classes == NUM_COCO_CLASSES:
        state_dict[CLASS_WEIGHT] = select_coco_rows(weight)
        state_dict[CLASS_BIAS] = select_coco_rows(bias)
    elif rows == NUM_COCO_CLASSES and num_classes == NUM_COCO_ID_ROWS:
        state_dict[CLASS_WEIGHT] = expand_coco_rows(weight, 0.0)
        state_dict[CLASS_BIAS] = expand_coco_rows(bias, PRIOR_BIAS)
    else:
        if rows == NUM_COCO_ID_ROWS:
            what = ('91 rows indexed by COCO category id (as the official '
                    'and Hugging Face models)')
            options = ('80 (the COCO classes, rows picked by category id) or '
                       '91 (kept as they are)')
        elif rows == NUM_COCO_CLASSES:
            what = '80 rows (the COCO classes)'
            options = ('80 (kept as they are) or 91 (COCO category ids, the '
                       'unused ids set to the prior)')
        else:
            what = f'{rows} rows (not a COCO head)'
            options = f'{rows} only'
        raise NumClassesError(
            f'cannot convert the class head to {num_classes} classes: the '
            f'checkpoint has {what}; it converts to {options}. Use '
            '--num-classes/num_classes accordingly, or fine-tune from it '
            'with a model of another size, whose class head then starts '
            'from scratch.')
    return rows


def convert(state_dict: Mapping[str, object],
            source: str = 'auto',
            num_classes: Optional[int] = NUM_COCO_CLASSES,
            target_keys: Optional[Collection[str]] = None) -> ConversionResult:
    """Convert a state dict (or a whole checkpoint) to this package's layout.

    Args:
        state_dict: The source tensors, or a loaded checkpoint holding them.
        source: ``'auto'`` or one of :data:`SOURCES`.
        num_classes: Rows of the class head to produce: 80 (the COCO classes;
            a 91-row head is reduced by COCO category id), 91 (category-id
            rows), the source's own count, or None to keep it.
        target_keys: The exact keys the target model has (e.g.
            ``model.state_dict().keys()``). Default: derived from the
            structure of the checkpoint (see :mod:`.layouts.native`).

    Raises:
        UnknownLayoutError: ``source='auto'`` and the layout is not
            recognised.
        NumClassesError: The class head cannot have ``num_classes`` rows.
        KeyMismatchError: Source keys left over or target keys not filled.
    """
    state_dict = extract_state_dict(state_dict)
    detected = source == 'auto'
    if detected:
        source = detect_source(state_dict)
    layout = get_layout(source)
    converted = layout.to_native(state_dict)
    native, filled = fill_num_batches_tracked(converted.state_dict)
    if target_keys is not None:
        target = set(target_keys)
        for key in [k for k in filled if k not in target]:
            del native[key]
            filled.remove(key)
    else:
        target = None
    source_rows = _map_classes(native, num_classes)
    if target is None:
        target = expected_keys(native)
    missing = sorted(target - set(native))
    extra = [k for k in native if k not in target]
    unexpected = list(converted.unmatched) + [
        converted.origin.get(k, k) for k in extra
    ]
    if missing or unexpected:
        raise KeyMismatchError(source, missing, unexpected, hint=_hint(
            source, detected, missing, unexpected))
    return ConversionResult(
        state_dict=native,
        source=source,
        detected=detected,
        num_classes=int(native[CLASS_WEIGHT].shape[0]),
        source_num_classes=source_rows,
        filled=filled)


def _hint(source: str, detected: bool, missing: List[str],
          unexpected: List[str]) -> str:
    if not detected and unexpected and not missing:
        return ''
    if not detected and len(unexpected) > 20:
        return (f'Is this really a {source!r} checkpoint? Try '
                "source='auto' (--source auto).")
    if any('.layers.' in k for k in missing + unexpected):
        return ('The model and the checkpoint may differ in depth (number '
                'of encoder/decoder layers or backbone blocks).')
    return ''


def convert_state_dict(state_dict: Mapping[str, object],
                       source: str = 'auto',
                       num_classes: Optional[int] = NUM_COCO_CLASSES,
                       target_keys: Optional[Collection[str]] = None,
                       logger='current') -> 'OrderedDict[str, torch.Tensor]':
    """Convert a state dict to this package's layout; see :func:`convert`.

    The chosen source is logged (mmengine's ``print_log``); use
    :func:`convert` to get it as a value.

    Returns:
        OrderedDict: Ready for ``model.load_state_dict(..., strict=True)``.
    """
    result = convert(state_dict, source, num_classes, target_keys)
    _log(f'mmdet_conddetr: converted a checkpoint from the '
         f'{result.describe()}.', logger)
    return result.state_dict


def export_state_dict(state_dict: Mapping[str, object],
                      to: str = 'official',
                      num_classes: Optional[int] = None,
                      source: str = 'auto'
                      ) -> 'OrderedDict[str, torch.Tensor]':
    """Write a state dict in another layout (``--to``).

    Args:
        state_dict: Tensors in any supported layout (usually ours).
        to: Target layout, one of :data:`SOURCES`.
        num_classes: Rows of the exported class head; default: those of the
            target's published checkpoints (91 for ``official`` and ``hf``,
            80 otherwise). 80 -> 91 fills the unused COCO ids with zero
            weights and the prior bias, so the official code loads the file
            with ``strict=True``.
        source: Layout of ``state_dict`` (``'auto'`` to detect).

    Returns:
        OrderedDict: The tensors under the target's names (frozen-BN
        targets get no ``num_batches_tracked``).
    """
    layout = get_layout(to)
    rows = layout.class_rows if num_classes is None else num_classes
    native = convert(state_dict, source, rows).state_dict
    if layout.frozen_bn:
        native = drop_num_batches_tracked(native)
    exported = layout.from_native(native)
    if exported.unmatched:
        raise KeyMismatchError(
            NATIVE, unexpected=exported.unmatched, target=to)
    return exported.state_dict


def _log(message: str, logger) -> None:
    if logger is None:
        return
    from mmengine.logging import print_log
    print_log(message, logger=logger)
