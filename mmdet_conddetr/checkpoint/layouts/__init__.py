"""Checkpoint layouts this package reads and writes.

Each layout knows how to recognise its keys and how to rename them to and
from this package's own layout (``mmdet_conddetr``), class rows untouched
(the 91/80 class mapping is done once, in :mod:`..convert`). The official
layout is the hub: detrex's and Hugging Face's converters were written from
it, so theirs are expressed as ``X <-> official`` and composed with
``official <-> ours``. The renaming rules they share (torchvision ResNet,
transformer name tables) are written once, in :mod:`.rules`.
"""
import re
from typing import Dict, Iterable, List, Optional

from ..keymap import Converted, KeyMap

__all__ = ['Layout', 'LAYOUTS', 'get_layout', 'FOREIGN_LAYOUTS']


class Layout:
    """A checkpoint layout.

    Attributes:
        name (str): Short name (``--source``/``--to`` value).
        title (str): Human-readable name for messages.
        required (tuple[str]): Regexes that all match some key of a state
            dict in this layout (and, together, of no other layout).
        class_rows (int): Rows of the class head this layout's published
            checkpoints have, used by default when exporting to it.
        frozen_bn (bool): Whether its backbone BN has no
            ``num_batches_tracked`` (they are dropped on export).
        container (str | None): Top-level key the state dict is saved under
            in this layout's checkpoint files (None: saved bare).
        renaming (KeyMap | None): This layout -> ours, when one map does it
            (else the layout overrides :meth:`to_native`/:meth:`from_native`).
    """
    name = ''
    title = ''
    required = ()
    class_rows = 80
    frozen_bn = False
    container = 'state_dict'
    renaming: Optional[KeyMap] = None

    def __init__(self) -> None:
        self._inverse = self.renaming.inverse() if self.renaming else None

    def matches(self, keys: Iterable[str]) -> bool:
        keys = list(keys)
        return all(
            any(re.search(pattern, key) for key in keys)
            for pattern in self.required)

    @property
    def example(self) -> str:
        """A typical key, for messages: the first required pattern at layer
        0 (its first alternative)."""
        key = self.required[0].strip('^$').replace(r'\d+', '0')
        key = re.sub(r'\(([^|()]*)\|[^()]*\)', r'\1', key)
        return key.replace('\\', '')

    def to_native(self, state_dict) -> Converted:
        """Rename to this package's layout (unmatched keys reported)."""
        return self.renaming.convert(state_dict)

    def from_native(self, state_dict) -> Converted:
        """Rename from this package's layout (unmatched keys reported)."""
        return self._inverse.convert(state_dict)


def _registry() -> Dict[str, Layout]:
    from .detrex import DetrexLayout
    from .hf import HFLayout
    from .mmdet import MMDetLayout
    from .native import NativeLayout
    from .official import OfficialLayout
    layouts = [
        NativeLayout(),
        OfficialLayout(),
        DetrexLayout(),
        HFLayout(),
        MMDetLayout()
    ]
    return {layout.name: layout for layout in layouts}


LAYOUTS: Dict[str, Layout] = _registry()

#: Names of the layouts other than this package's own.
FOREIGN_LAYOUTS: List[str] = [
    name for name in LAYOUTS if name != 'mmdet_conddetr'
]


def get_layout(name: str) -> Layout:
    try:
        return LAYOUTS[name]
    except KeyError:
        raise ValueError(f'unknown checkpoint layout {name!r}; choose from '
                         f'{", ".join(LAYOUTS)}') from None
