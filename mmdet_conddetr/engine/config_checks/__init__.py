"""Checks of a config before anything is built, with messages that say what
is wrong and how to fix it (used by :mod:`..preflight` and :mod:`..cli`).

* :mod:`.loading`: :func:`load_config`, ``Config.fromfile`` with clear errors;
* :mod:`.registry_types`: every ``type='...'`` names a registered class;
* :mod:`.data`: ``num_classes`` agrees with the datasets, the data files
  exist, the work directory is writable;
* :mod:`.runtime`: settings torch or mmengine reject (dataloaders, the
  train/val/test trios), a launcher without its environment, devices, a work
  directory that holds another run.

All raise :class:`~mmdet_conddetr.errors.ConfigCheckError` (or
``WorkDirError``) listing every problem found, not only the first.
"""
from .data import check_data_paths, check_num_classes, check_work_dir
from .loading import load_config
from .registry_types import (check_registry_types, explain_registry_key_error,
                             registered_names, suggest_registered)

__all__ = [
    'load_config', 'check_registry_types', 'check_num_classes',
    'check_data_paths', 'check_work_dir', 'suggest_registered',
    'explain_registry_key_error', 'registered_names'
]
