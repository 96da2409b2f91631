"""Speed, memory and FLOPs of our Conditional DETR next to MMDetection 3.3's
built-in one.

    python tools/analysis_tools/benchmark.py --out work_dirs/bench.json
    python tools/analysis_tools/benchmark.py --scale --out work_dirs/scale.json
    python tools/analysis_tools/benchmark.py --quick            # seconds, tiny
    python tools/analysis_tools/benchmark.py --device cuda --amp

The measurements live in :mod:`mmdet_conddetr.benchmark`; this is its front
end.
"""
import warnings

# mmengine 0.10.x imports pkg_resources, whose deprecation warning would
# head every run's output.
warnings.filterwarnings('ignore', message='.*pkg_resources.*')

from mmdet_conddetr.benchmark.cli import main  # noqa: E402

if __name__ == '__main__':
    main()
