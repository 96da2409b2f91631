"""What an exported model needs to be used correctly, read from its config
and stored in the ONNX file (``metadata_props['mmdet_conddetr']``, JSON).

Keys: ``format`` (this schema's version), ``package`` and
``package_version``, ``config``, ``classes``, ``outputs``, ``raw``,
``preprocess`` (``decode``, ``resize``, ``mean``, ``std``,
``channel_order``, ``layout``), ``opset``. :mod:`.runtime` reads
``preprocess`` to repeat the test pipeline.
"""
from typing import Any, Dict, List, Optional

from mmengine.config import Config

from mmdet_conddetr.errors import ConfigCheckError
from mmdet_conddetr.version import __version__

FORMAT = 1


def _type_name(transform: dict) -> str:
    return str(transform.get('type', '')).split('.')[-1]


def resize_rule(pipeline: List[dict]) -> Dict[str, Any]:
    """The resize of a test pipeline as :mod:`.runtime` knows it.

    Raises:
        ConfigCheckError: a resize the runtime cannot repeat (named).
    """
    for transform in pipeline:
        name = _type_name(transform)
        if name == 'DETRResize':
            scale = transform['scale']
            if not isinstance(scale, int):
                raise ConfigCheckError(
                    f'test pipeline DETRResize(scale={scale!r}): the ONNX '
                    'runtime repeats an int scale (short side) only.')
            return dict(rule='detr',
                        size=scale,
                        max_size=transform.get('max_size'),
                        interpolation='PIL.BILINEAR')
        if name == 'Resize':
            if not transform.get('keep_ratio', False):
                raise ConfigCheckError(
                    'test pipeline Resize(keep_ratio=False): the ONNX runtime '
                    'repeats DETRResize or Resize(keep_ratio=True) only.')
            return dict(rule='keep_ratio',
                        scale=list(transform['scale']),
                        backend=transform.get('backend', 'cv2'),
                        interpolation='bilinear')
    return dict(rule='none')


def decode_rule(pipeline: List[dict]) -> Dict[str, Any]:
    """How the test pipeline decodes an image file."""
    load = next((t for t in pipeline if 'Load' in _type_name(t)
                 and 'Annotations' not in _type_name(t)), {})
    return dict(backend=load.get('imdecode_backend', 'cv2'),
                exif_orientation=load.get('color_type', 'color') == 'color')


def class_names(cfg: Config, num_classes: int) -> List[str]:
    """The dataset's class names (config metainfo, else the dataset class's
    ``METAINFO``), or ``class_<i>`` when they do not fit the head."""
    dataset = cfg.get('test_dataloader', {}).get('dataset', {})
    classes = (dataset.get('metainfo') or {}).get('classes')
    if classes is None and dataset.get('type'):
        from mmdet_conddetr.registry import DATASETS
        try:
            dataset_cls = DATASETS.get(dataset['type'])
        except KeyError:
            dataset_cls = None
        classes = getattr(dataset_cls, 'METAINFO', {}).get('classes')
    if classes is None or len(classes) != num_classes:
        return [f'class_{i}' for i in range(num_classes)]
    return [str(c) for c in classes]


def build_metadata(cfg: Config,
                   num_classes: int,
                   raw: bool,
                   opset: Optional[int],
                   outputs: List[str],
                   config_name: str = '') -> Dict[str, Any]:
    """The metadata dict of a model exported from ``cfg``."""
    pipeline = cfg.get('test_dataloader', {}).get('dataset', {}).get(
        'pipeline') or cfg.get('test_pipeline') or []
    preprocessor = cfg.model.get('data_preprocessor', {})
    rgb = preprocessor.get('bgr_to_rgb', False)
    return dict(
        format=FORMAT,
        package='mmdet_conddetr',
        package_version=__version__,
        config=config_name,
        classes=class_names(cfg, num_classes),
        raw=raw,
        outputs=outputs,
        boxes='xyxy, input-image pixels' if not raw else
        'cxcywh, normalised 0..1',
        opset=opset,
        preprocess=dict(
            decode=decode_rule(pipeline),
            resize=resize_rule(pipeline),
            mean=[float(v) for v in preprocessor.get('mean', [0, 0, 0])],
            std=[float(v) for v in preprocessor.get('std', [1, 1, 1])],
            # mmcv decodes BGR; bgr_to_rgb flips it, so the network sees RGB.
            channel_order='RGB' if rgb else 'BGR',
            layout='NCHW',
            pad_size_divisor=preprocessor.get('pad_size_divisor', 1)))
