"""The COCO class-id mapping between 91-row and 80-row classifiers.

The official Conditional DETR (as DETR) sizes its classifier by the largest
COCO category id plus one: 91 logits, row ``i`` scoring category id ``i``;
row 0 and the ten ids COCO never uses (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)
are never positives. MMDetection, detrex's own models and this package use 80
logits, class ``j`` being the ``j``-th category id in increasing order (the
order of the ``categories`` of the COCO annotation files, which MMDetection's
``CocoDataset`` follows). Converting 91 -> 80 therefore takes the rows
:data:`COCO_CATEGORY_IDS`, not the first 80 rows.
"""
import math
from typing import Tuple

import torch
from torch import Tensor

__all__ = [
    'COCO_CATEGORY_IDS', 'COCO_UNUSED_IDS', 'NUM_COCO_ID_ROWS',
    'NUM_COCO_CLASSES', 'PRIOR_BIAS', 'select_coco_rows', 'expand_coco_rows'
]

#: Category ids COCO reserves but never annotates.
COCO_UNUSED_IDS: Tuple[int, ...] = (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)

#: The 80 annotated category ids, ascending: class ``j`` <-> id
#: ``COCO_CATEGORY_IDS[j]``.
COCO_CATEGORY_IDS: Tuple[int, ...] = tuple(
    i for i in range(1, 91) if i not in COCO_UNUSED_IDS)

NUM_COCO_ID_ROWS = 91
NUM_COCO_CLASSES = 80

#: The focal-loss prior bias ``-log((1 - 0.01) / 0.01)`` every Conditional
#: DETR implementation initialises its class bias with; rows that no data
#: ever trains keep (about) this value.
PRIOR_BIAS = -math.log((1 - 0.01) / 0.01)


def select_coco_rows(tensor: Tensor) -> Tensor:
    """Rows of a 91-row (weight or bias) tensor for the 80 COCO classes."""
    if tensor.shape[0] != NUM_COCO_ID_ROWS:
        raise ValueError(f'expected {NUM_COCO_ID_ROWS} rows, got '
                         f'{tensor.shape[0]}')
    index = torch.tensor(COCO_CATEGORY_IDS, dtype=torch.long)
    return tensor.index_select(0, index.to(tensor.device)).clone()


def expand_coco_rows(tensor: Tensor, fill: float) -> Tensor:
    """Scatter an 80-row tensor into 91 rows indexed by category id.

    The 11 rows of no category (id 0 and :data:`COCO_UNUSED_IDS`) are set to
    ``fill``: 0 for the weight, :data:`PRIOR_BIAS` for the bias, so they score
    the untrained prior (about 0.01 after the sigmoid) as in a freshly
    initialised official model.
    """
    if tensor.shape[0] != NUM_COCO_CLASSES:
        raise ValueError(f'expected {NUM_COCO_CLASSES} rows, got '
                         f'{tensor.shape[0]}')
    out = tensor.new_full((NUM_COCO_ID_ROWS, ) + tuple(tensor.shape[1:]),
                          fill)
    index = torch.tensor(COCO_CATEGORY_IDS, dtype=torch.long)
    out[index.to(tensor.device)] = tensor
    return out
