"""Deployment: export a detector to ONNX and run it with ONNX Runtime.

* :mod:`.export`: the detector as a function of a normalised image batch
  (:class:`ExportableDetector`) and :func:`export_onnx` (torch.export with
  dynamic height and width, then ONNX), with clear errors naming the module
  that cannot be traced;
* :mod:`.metadata`: classes, pre-processing and versions from the config,
  stored in the ONNX file;
* :mod:`.loading`: the config's detector with a checkpoint of any layout;
* :mod:`.runtime`: inference with onnxruntime, numpy and PIL only (the same
  pre-processing as the test pipeline), importable without this package's
  heavy dependencies when its file is loaded on its own (importing it
  through this package runs the package's ``__init__``, which imports
  torch; ``tools/deployment/onnx_inference.py`` loads the file directly).

The export side (:func:`.export.export_onnx`, :func:`.loading.load_detector`)
is imported from its modules, not here, so that importing this package for
inference does not load ``torch.export``/``onnx``.
"""
from .runtime import (OnnxDetector, draw_detections, get_size_with_aspect_ratio,
                      load_image, preprocess)

__all__ = [
    'OnnxDetector', 'draw_detections', 'get_size_with_aspect_ratio',
    'load_image', 'preprocess'
]
