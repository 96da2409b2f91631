"""Utilities shared across mmdet_conddetr."""
from .safe_load import (allow_checkpoint_types,
                        allow_mmengine_checkpoint_types,
                        mmengine_checkpoint_safe_globals)

__all__ = [
    'allow_checkpoint_types', 'allow_mmengine_checkpoint_types',
    'mmengine_checkpoint_safe_globals'
]
