"""Exceptions whose message is meant for the user of the tools.

Each message names the problem and how to fix it. ``tools/train.py`` and
``tools/test.py`` run their ``main`` through :func:`.cli.run_cli`, which
prints such a message as ``error: ...`` (and writes it to the run's log when
there is one) instead of a traceback; set ``MMDET_CONDDETR_DEBUG=1`` to get
the traceback as well.

Every class here can be built from its message alone: mmengine's registry
re-raises an exception from inside a build as ``type(error)(new_message)``.
"""

__all__ = [
    'UserFacingError', 'ConfigCheckError', 'DataCheckError', 'WorkDirError',
    'NonFiniteLossError', 'CheckpointSaveError', 'DistributedFailureError'
]


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


class DistributedFailureError(UserFacingError, RuntimeError):
    """Another process of a distributed job died or stopped responding."""
