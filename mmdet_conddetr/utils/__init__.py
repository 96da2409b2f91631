"""Utilities shared across mmdet_conddetr."""
from .safe_load import (allow_mmengine_checkpoint_types,
                        mmengine_checkpoint_safe_globals)

__all__ = ['allow_mmengine_checkpoint_types', 'mmengine_checkpoint_safe_globals']
