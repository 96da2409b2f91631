"""Hooks of the ``mmdet_conddetr`` scope (registered in its ``HOOKS``)."""
from .atomic_checkpoint import (AtomicCheckpointHook, atomic_write_text,
                                fsync_directory)
from .checkpoint_match import (CheckpointMatchHook, CheckpointMismatchError,
                               match_checkpoint)
from .non_finite_loss import NonFiniteLossHook

__all__ = [
    'AtomicCheckpointHook', 'CheckpointMatchHook', 'CheckpointMismatchError',
    'NonFiniteLossHook', 'atomic_write_text', 'fsync_directory',
    'match_checkpoint'
]
