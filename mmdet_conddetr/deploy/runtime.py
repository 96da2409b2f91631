"""Run an exported Conditional DETR with ONNX Runtime: numpy, PIL and
onnxruntime only (no torch, mmcv or mmdet), so a service can ship it alone.

The pre-processing is read from the model's ONNX metadata (written by
:mod:`.export` from the config) and repeats the config's test pipeline:

* decoding as the official code, ``Image.open(path).convert('RGB')``: the
  EXIF orientation tag is ignored, as in the COCO configs
  (``color_type='color_ignore_orientation'``, pillow backend), or applied
  for a config that decodes with mmcv's default ``color_type='color'``;
* resizing with the rule the config names: ``'detr'`` is the official
  ``get_size_with_aspect_ratio`` (short side ``size``, the long side
  truncated, optional cap ``max_size``) with PIL's bilinear filter;
  ``'keep_ratio'`` is mmcv's ``Resize(keep_ratio=True)`` size rule (the
  demo configs) with bilinear interpolation at pixel centres, which is what
  OpenCV's ``INTER_LINEAR`` computes (OpenCV rounds its weights to 11 bits:
  up to one grey level apart);
* normalising with the config's mean and std on 0..255 RGB, NCHW.

Boxes come back in original-image pixels: the graph's boxes (input pixels)
times original/resized size per axis, which is the normalised box times the
original size, as ``predict`` computes it.

Of its package this file imports only the leaf ``size_rule.py`` (pure
Python, the official size rule), so it can be loaded by path
(``tools/deployment/onnx_inference.py`` does, to keep torch out of the
process); it then loads ``../size_rule.py`` by path too.
"""
import importlib.util
import json
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image, ImageDraw, ImageOps

if __package__:
    from ..size_rule import get_size_with_aspect_ratio
else:
    # Loaded by path as a top-level module: importing the leaf through the
    # package would run the package's __init__ (torch, mmdet).
    _PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    _SPEC = importlib.util.spec_from_file_location(
        'mmdet_conddetr_size_rule', os.path.join(_PACKAGE_DIR, 'size_rule.py'))
    _SIZE_RULE = importlib.util.module_from_spec(_SPEC)
    _SPEC.loader.exec_module(_SIZE_RULE)
    get_size_with_aspect_ratio = _SIZE_RULE.get_size_with_aspect_ratio

METADATA_KEY = 'mmdet_conddetr'


def keep_ratio_size(width: int, height: int,
                    scale: Sequence[int]) -> Tuple[int, int]:
    """Output ``(width, height)`` of mmcv's ``Resize(scale, keep_ratio=True)``:
    the largest factor that fits the long side in ``max(scale)`` and the
    short side in ``min(scale)``, sides rounded."""
    factor = min(max(scale) / max(width, height),
                 min(scale) / min(width, height))
    return int(width * factor + 0.5), int(height * factor + 0.5)


def _bilinear_no_antialias(array: np.ndarray, width: int,
                           height: int) -> np.ndarray:
    """Bilinear resize sampling at pixel centres, no antialiasing."""
    out = array.astype(np.float32)
    for axis, new in ((0, height), (1, width)):
        old = out.shape[axis]
        pos = np.clip((np.arange(new) + 0.5) * old / new - 0.5, 0, old - 1)
        low = np.floor(pos).astype(np.int64)
        high = np.minimum(low + 1, old - 1)
        shape = [1, 1, 1]
        shape[axis] = new
        frac = (pos - low).reshape(shape)
        out = (np.take(out, low, axis=axis) * (1 - frac) +
               np.take(out, high, axis=axis) * frac)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def load_image(path: str, exif_orientation: bool = False) -> Image.Image:
    """RGB image as the official loader reads it: EXIF orientation ignored
    unless ``exif_orientation`` (mmcv's ``color_type='color'``).

    Raises:
        OSError: the file is missing or not an image (the path is named).
    """
    try:
        with Image.open(path) as image:
            if exif_orientation:
                image = ImageOps.exif_transpose(image)
            return image.convert('RGB')
    except FileNotFoundError:
        raise FileNotFoundError(f'image not found: {path}') from None
    except OSError as error:
        raise OSError(f'{path} cannot be read as an image: {error}') from None


def resize(image: Image.Image, spec: Dict[str, Any]) -> Image.Image:
    """Resize as the model's test pipeline (``spec`` = metadata
    ``preprocess``)."""
    rule = spec['resize']
    width, height = image.size
    if rule['rule'] == 'detr':
        size = get_size_with_aspect_ratio(width, height, rule['size'],
                                          rule.get('max_size'))
    elif rule['rule'] == 'keep_ratio':
        size = keep_ratio_size(width, height, rule['scale'])
    elif rule['rule'] == 'none':
        return image
    else:
        raise ValueError(f'unknown resize rule {rule["rule"]!r} in the ONNX '
                         'metadata; this runtime knows detr, keep_ratio and '
                         'none. Re-export the model with this package.')
    if size == (width, height):
        return image
    if rule['rule'] == 'keep_ratio' and rule.get('backend', 'cv2') == 'cv2':
        return Image.fromarray(
            _bilinear_no_antialias(np.asarray(image), *size))
    return image.resize(size, Image.BILINEAR)


def preprocess(image: Image.Image, spec: Dict[str, Any]) -> np.ndarray:
    """The model input of one RGB image: resized, normalised, [1, 3, h, w]
    float32."""
    array = np.asarray(resize(image, spec), dtype=np.float32)
    if spec['channel_order'] == 'BGR':
        array = array[..., ::-1]
    mean = np.asarray(spec['mean'], dtype=np.float32)
    std = np.asarray(spec['std'], dtype=np.float32)
    array = (array - mean) / std
    return np.ascontiguousarray(array.transpose(2, 0, 1)[None])


class OnnxDetector:
    """An exported detector in an ONNX Runtime session.

    Args:
        model_path (str): The ``.onnx`` file.
        threads (int, optional): Intra-op threads (default: ONNX Runtime's
            choice, one per core).
        providers (list[str], optional): Execution providers, default CPU.
    """

    def __init__(self,
                 model_path: str,
                 threads: Optional[int] = None,
                 providers: Optional[List[str]] = None) -> None:
        import onnxruntime as ort
        if not os.path.isfile(model_path):
            raise FileNotFoundError(
                f'ONNX model not found: {model_path} (export one with '
                'tools/deployment/export_onnx.py)')
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            model_path,
            options,
            providers=providers or ['CPUExecutionProvider'])
        meta = self.session.get_modelmeta().custom_metadata_map
        if METADATA_KEY not in meta:
            raise ValueError(
                f'{model_path} has no {METADATA_KEY!r} metadata: export it '
                'with tools/deployment/export_onnx.py.')
        self.metadata = json.loads(meta[METADATA_KEY])
        self.classes = list(self.metadata['classes'])
        self.input_name = self.session.get_inputs()[0].name

    def load_image(self, path: str) -> Image.Image:
        """An image file decoded as the model's test pipeline does."""
        decode = self.metadata['preprocess'].get('decode', {})
        return load_image(path, decode.get('exif_orientation', False))

    def run(self, inputs: np.ndarray) -> List[np.ndarray]:
        """The graph's raw outputs for a normalised [B, 3, H, W] batch."""
        return self.session.run(None, {self.input_name: inputs})

    def __call__(self, image: Union[str, Image.Image]) -> Dict[str, Any]:
        """Detections of one image (a path or an RGB PIL image).

        Returns:
            dict: ``scores`` [K], ``labels`` [K], ``boxes`` [K, 4] xyxy in
            original-image pixels, ``label_names`` and the model input
            ``input_size`` (w, h) and ``image_size`` (w, h).
        """
        if isinstance(image, str):
            image = self.load_image(image)
        if self.metadata.get('raw'):
            raise ValueError('this model was exported with --raw (per-layer '
                             'logits and boxes): run() gives its outputs.')
        inputs = preprocess(image, self.metadata['preprocess'])
        scores, labels, boxes = self.run(inputs)
        height, width = inputs.shape[2:]
        scale = np.asarray([image.width / width, image.height / height] * 2,
                           dtype=np.float32)
        labels = labels[0].astype(np.int64)
        return dict(scores=scores[0],
                    labels=labels,
                    boxes=boxes[0] * scale,
                    label_names=[self.classes[i] for i in labels],
                    input_size=(width, height),
                    image_size=image.size)


def draw_detections(image: Image.Image,
                    detections: Dict[str, Any],
                    score_thr: float = 0.3) -> Image.Image:
    """A copy of ``image`` with the boxes and class names of the detections
    scoring at least ``score_thr``."""
    out = image.copy()
    draw = ImageDraw.Draw(out)
    for score, name, box in zip(detections['scores'],
                                detections['label_names'],
                                detections['boxes']):
        if score < score_thr:
            continue
        box = [float(v) for v in box]
        draw.rectangle(box, outline=(255, 64, 0), width=2)
        draw.text((box[0] + 2, box[1] + 1), f'{name} {score:.2f}',
                  fill=(255, 255, 0))
    return out
