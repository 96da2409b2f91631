"""Training/testing helpers of the ``mmdet_conddetr`` scope.

This package is also the import location of the scope's ``HOOKS`` registry
(see :mod:`mmdet_conddetr.registry`), so it must stay importable; custom
hooks belong here and register into ``mmdet_conddetr.registry.HOOKS``.
"""
from .amp import CPUAmpOptimWrapper, enable_amp
from .launcher import init_cpu_process_group, setup_cpu_distributed
from .optim_constructor import MergedGroupsOptimWrapperConstructor

# Reliability: clear errors, crash-safe checkpoints, non-finite loss guard.
from mmdet_conddetr.errors import (  # noqa: E402
    CheckpointMismatchError, CheckpointSaveError, ConfigCheckError,
    DataCheckError, DistributedFailureError, NonFiniteLossError,
    UserFacingError, WorkDirError)
from .hooks import (AtomicCheckpointHook, CheckpointMatchHook,  # noqa: E402
                    NonFiniteLossHook)
from .cli import run_cli, set_cli_context, user_message  # noqa: E402
from .preflight import prepare_test, prepare_train  # noqa: E402

__all__ = [
    'CPUAmpOptimWrapper', 'MergedGroupsOptimWrapperConstructor',
    'enable_amp', 'init_cpu_process_group', 'setup_cpu_distributed',
    'UserFacingError', 'ConfigCheckError',
    'DataCheckError', 'WorkDirError', 'NonFiniteLossError',
    'CheckpointSaveError', 'DistributedFailureError', 'AtomicCheckpointHook',
    'CheckpointMatchHook', 'CheckpointMismatchError', 'NonFiniteLossHook',
    'run_cli', 'set_cli_context', 'user_message', 'prepare_train',
    'prepare_test'
]
