"""Hooks of the ``mmdet_conddetr`` scope (registered in its ``HOOKS``)."""
from .atomic_checkpoint import (AtomicCheckpointHook, atomic_write_text,
                                fsync_directory)
from .checkpoint_match import (CheckpointMatchHook, CheckpointMismatchError,
                               match_checkpoint)
from .non_finite_loss import NonFiniteLossHook
from .tf32 import TF32Hook, set_tf32_matmul

__all__ = [
    'AtomicCheckpointHook', 'CheckpointMatchHook', 'CheckpointMismatchError',
    'NonFiniteLossHook', 'TF32Hook', 'atomic_write_text', 'fsync_directory',
    'match_checkpoint', 'set_tf32_matmul'
]
