"""Read, convert and write Conditional DETR checkpoints of every layout.

Supported layouts (``source``/``--to`` names):

* ``official``: Atten4Vis/ConditionalDETR (``{'model': ...}``, 91 COCO-id
  class rows, torchvision backbone names);
* ``detrex``: IDEA-Research/detrex, both its ``converted_*`` files and its own
  trained weights (80 classes, detectron2 backbone names);
* ``hf``: Hugging Face transformers ``ConditionalDetrForObjectDetection``
  (hub/``save_pretrained`` names and transformers 5 in-memory names; timm or
  transformers ResNet backbone);
* ``mmdet``: MMDetection 3.x's built-in ``ConditionalDETR``;
* ``mmdet_conddetr``: this package.

Typical use::

    from mmdet_conddetr.checkpoint import convert_state_dict
    model.load_state_dict(convert_state_dict(torch.load(path)['model']))

Loading a foreign checkpoint into a ``ConditionalDETR`` (``load_from=``,
``tools/test.py CONFIG CKPT``) converts it on the fly (see
:mod:`.load_pre_hook`).
Importing this package allow-lists ``argparse.Namespace`` for
``torch.load(weights_only=True)`` (the official files store their command
line), see :func:`allow_foreign_checkpoint_types`, and gives mmengine's
``http(s)://`` checkpoint downloads a timeout and one clear error (see
:mod:`.download`).
"""
from .coco_classes import (COCO_CATEGORY_IDS, COCO_UNUSED_IDS, PRIOR_BIAS,
                           expand_coco_rows, select_coco_rows)
from .convert import (SOURCES, ConversionResult, convert, convert_state_dict,
                      export_state_dict)
from .detect import detect_source, extract_state_dict
from .download import register_http_loader
from ..errors import (CheckpointError, CheckpointFileError,
                      CheckpointMismatchError, KeyMismatchError,
                      NumClassesError, UnknownLayoutError,
                      UnsafeCheckpointError)
from .load_pre_hook import foreign_checkpoint_pre_hook
from .save import checkpoint_meta, save_checkpoint
from .io import (allow_foreign_checkpoint_types, load_foreign_checkpoint,
                 read_checkpoint_file)
from .layouts import FOREIGN_LAYOUTS, LAYOUTS
from .layouts.native import CLASS_BIAS, CLASS_WEIGHT, NATIVE

allow_foreign_checkpoint_types()
register_http_loader()

__all__ = [
    'COCO_CATEGORY_IDS', 'COCO_UNUSED_IDS', 'PRIOR_BIAS', 'expand_coco_rows',
    'select_coco_rows', 'SOURCES', 'LAYOUTS', 'FOREIGN_LAYOUTS', 'NATIVE',
    'CLASS_WEIGHT', 'CLASS_BIAS',
    'ConversionResult', 'convert', 'convert_state_dict', 'detect_source',
    'export_state_dict', 'extract_state_dict', 'CheckpointError',
    'CheckpointFileError', 'CheckpointMismatchError', 'KeyMismatchError',
    'NumClassesError', 'UnknownLayoutError', 'UnsafeCheckpointError',
    'foreign_checkpoint_pre_hook', 'allow_foreign_checkpoint_types',
    'checkpoint_meta', 'load_foreign_checkpoint', 'read_checkpoint_file',
    'save_checkpoint'
]
