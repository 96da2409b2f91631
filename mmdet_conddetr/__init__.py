"""Conditional DETR (Meng et al., ICCV 2021) as an MMDetection 3.x extension.

Importing the package registers every component in the ``mmdet_conddetr``
registry scope, allow-lists the types mmengine writes into checkpoints (so
``torch.load`` keeps its ``weights_only`` safety on torch >= 2.6) and makes
``mmdet_conddetr::conditional_detr/<config>.py`` paths resolvable.
"""
from .utils.package_paths import register_package_configs
from .utils.safe_load import allow_checkpoint_types
from .version import __version__

allow_checkpoint_types()
register_package_configs()

from . import models  # noqa: E402,F401  (registers the modules)

__all__ = ['__version__']
