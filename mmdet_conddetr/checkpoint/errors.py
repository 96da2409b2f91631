"""Exceptions raised while reading or converting checkpoints.

All of them derive from :class:`CheckpointError` (itself a ``ValueError``), so
callers can catch one type; the command line tool prints their message and
exits with status 2 instead of showing a traceback.
"""
from typing import Iterable, List, Optional

__all__ = [
    'CheckpointError', 'CheckpointFileError', 'UnsafeCheckpointError',
    'UnknownLayoutError', 'KeyMismatchError', 'NumClassesError'
]

# How many keys an error message lists before summarising the rest.
_MAX_LISTED = 40


def format_keys(keys: Iterable[str], limit: int = _MAX_LISTED) -> str:
    """One key per line, indented; at most ``limit`` of them."""
    keys = list(keys)
    lines = [f'    {key}' for key in keys[:limit]]
    if len(keys) > limit:
        lines.append(f'    ... and {len(keys) - limit} more')
    return '\n'.join(lines)


class CheckpointError(ValueError):
    """Base class of every checkpoint reading/conversion error."""


class CheckpointFileError(CheckpointError):
    """The file cannot be read as a checkpoint (missing, truncated, corrupt,
    not a checkpoint at all, or holding no state dict)."""


class UnsafeCheckpointError(CheckpointFileError):
    """The file needs Python objects that ``torch.load(weights_only=True)``
    refuses to rebuild; it can only be read by trusting it."""


class UnknownLayoutError(CheckpointError):
    """The keys match none of the supported Conditional DETR layouts."""


class NumClassesError(CheckpointError):
    """The class head cannot be mapped to the requested number of classes."""


class KeyMismatchError(CheckpointError):
    """Some source keys were not consumed or some target keys not filled.

    Attributes:
        missing (list[str]): Target keys the conversion did not produce.
        unexpected (list[str]): Source keys no rule of the layout consumed
            (named as in the source checkpoint).
        source (str): The layout that was converted from.
    """

    def __init__(self,
                 source: str,
                 missing: Optional[List[str]] = None,
                 unexpected: Optional[List[str]] = None,
                 target: str = 'mmdet_conddetr',
                 hint: str = ''):
        self.source = source
        self.target = target
        self.missing = sorted(missing or [])
        self.unexpected = sorted(unexpected or [])
        parts = [
            f'converting a checkpoint from the {source!r} layout to the '
            f'{target!r} layout would be incomplete: '
            f'{len(self.unexpected)} source key(s) not consumed, '
            f'{len(self.missing)} target key(s) not filled. Nothing was '
            'loaded.'
        ]
        if self.unexpected:
            parts.append('Unexpected keys (in the checkpoint, no counterpart '
                         'in the target):\n' + format_keys(self.unexpected))
        if self.missing:
            parts.append('Missing keys (the target needs them, the checkpoint '
                         'does not provide them):\n' +
                         format_keys(self.missing))
        if hint:
            parts.append(hint)
        super().__init__('\n'.join(parts))
