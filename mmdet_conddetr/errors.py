"""Every exception of the package whose message is meant for the user.

One hierarchy, in a leaf module (it imports nothing from the package), so
every subpackage can raise these without importing another one::

    UserFacingError
      ConfigCheckError (ValueError)      the config cannot work
      DataCheckError (ValueError)        the dataset cannot be read
      WorkDirError (OSError)             the work dir cannot be written
      NonFiniteLossError (FloatingPointError)
      CheckpointSaveError (OSError)      a checkpoint could not be written
      DownloadError (OSError)            a checkpoint URL cannot be fetched
      DistributedFailureError (RuntimeError)
      ExportError (RuntimeError)         a model cannot be exported to ONNX
      CheckpointError (ValueError)       reading/converting/matching weights
        CheckpointFileError              the file is not a checkpoint
          UnsafeCheckpointError          needs weights_only=False
        UnknownLayoutError               keys of no supported layout
        NumClassesError                  class head cannot be mapped
        KeyMismatchError                 conversion would be incomplete
        CheckpointMismatchError          weights do not fit the model

Each message names the problem and how to fix it. ``tools/train.py``,
``tools/test.py`` and the converter print it as ``error: ...`` instead of a
traceback (see :mod:`mmdet_conddetr.engine.cli`); set
``MMDET_CONDDETR_DEBUG=1`` to get the traceback as well.

Every class but :class:`KeyMismatchError` can be built from its message
alone: mmengine's registry re-raises an exception from inside a build as
``type(error)(new_message)``.
"""
from typing import Iterable, List, Optional

__all__ = [
    'UserFacingError', 'ConfigCheckError', 'DataCheckError', 'WorkDirError',
    'NonFiniteLossError', 'CheckpointSaveError', 'DownloadError',
    'DistributedFailureError',
    'ExportError',
    'CheckpointError', 'CheckpointFileError', 'UnsafeCheckpointError',
    'UnknownLayoutError', 'NumClassesError', 'KeyMismatchError',
    'CheckpointMismatchError', 'format_keys'
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


class UserFacingError(Exception):
    """Base class: the message alone tells the user what to do."""


class ConfigCheckError(UserFacingError, ValueError):
    """The config cannot work: missing file, unknown type, inconsistent
    values."""


class DataCheckError(UserFacingError, ValueError):
    """The dataset cannot be read: missing paths, malformed annotations,
    unreadable images at test time."""


class WorkDirError(UserFacingError, OSError):
    """The work directory cannot be created or written to."""


class NonFiniteLossError(UserFacingError, FloatingPointError):
    """A loss term (or the predictions the matcher sees) is NaN or inf.

    Attributes (None when built from a message only):
        terms (dict): name -> value of the non-finite terms on this rank.
        iteration (int): 1-based training iteration, as the logs count.
        checkpoint (str): the checkpoint to resume from, if any.
    """

    def __init__(self, message, terms=None, iteration=None, checkpoint=None):
        super().__init__(message)
        self.terms = terms
        self.iteration = iteration
        self.checkpoint = checkpoint


class CheckpointSaveError(UserFacingError, OSError):
    """A checkpoint could not be written (disk full, quota, I/O error); the
    previous checkpoint is untouched."""


class DownloadError(UserFacingError, OSError):
    """A checkpoint named by URL could not be downloaded (no internet, a
    proxy that does not answer, a wrong URL); nothing was written to the
    download cache.

    Attributes (None when built from a message only):
        url (str): The URL that failed.
        key (str): The config key or argument that named it, if known.
    """

    def __init__(self, message, url=None, key=None):
        super().__init__(message)
        self.url = url
        self.key = key


class DistributedFailureError(UserFacingError, RuntimeError):
    """Another process of a distributed job died or stopped responding."""


class ExportError(UserFacingError, RuntimeError):
    """The model (or one of its modules, named) cannot be exported to
    ONNX."""


class CheckpointError(UserFacingError, ValueError):
    """Base class of every checkpoint reading/conversion/matching error."""


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


class CheckpointMismatchError(CheckpointError):
    """The checkpoint's weights do not fit the model; nothing was loaded."""


class KeyMismatchError(CheckpointError):
    """Some source keys were not consumed or some target keys not filled.

    Args:
        source (str): The layout that was converted from.
        missing (list[str], optional): Target keys the conversion did not
            produce.
        unexpected (list[str], optional): Source keys no rule of the layout
            consumed (named as in the source checkpoint).
        target (str): The layout converted to.
        hint (str): A last paragraph saying how to fix it.
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
