"""Export a Conditional DETR config + checkpoint to ONNX.

    python tools/deployment/export_onnx.py CONFIG CHECKPOINT --out model.onnx
        [--opset N] [--dynamic] [--raw] [--cfg-options KEY=VALUE ...]

See ``--help`` and :mod:`mmdet_conddetr.deploy.cli`.
"""
import warnings

# mmengine 0.10.x imports pkg_resources, whose deprecation warning would
# head every run's output.
warnings.filterwarnings('ignore', message='.*pkg_resources.*')

from mmdet_conddetr.deploy.cli import main  # noqa: E402

if __name__ == '__main__':
    main()
