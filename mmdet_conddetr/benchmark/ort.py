"""ONNX Runtime next to our PyTorch model and mmdet's built-in one
(``benchmark.py --ort``): batch-1 inference latency at 800x1216 and 512x512.

Our model (with mmdet's weights, see :mod:`.build`) is exported with
:func:`mmdet_conddetr.deploy.export.export_onnx` (dynamic height and width,
one file for both sizes) and run by an ONNX Runtime session with as many
intra-op threads as PyTorch uses (one inter-op thread), so both get the same
cores. The three are timed interleaved on the same normalised input; what
each call does: PyTorch ``mode='predict'`` (network + top-100), ONNX
Runtime the exported graph (network + top-100). Before timing, ONNX
Runtime's detections are checked against ours (:mod:`.outputs`).
"""
import os.path as osp
import tempfile
from typing import Any, Dict, Optional

import torch

from .build import build_pair, make_data
from .machine import machine_info
from .outputs import match_detections
from .settings import MMDET, OURS, SETTINGS, TOLERANCE
from .steps import inference_fn
from .timing import CpuMonitor, log, ratio, summarize, time_interleaved

ORT = 'ort'
ORT_SIZES = [(800, 1216), (512, 512)]
QUICK_SIZES = [(96, 128), (64, 64)]


def ort_session(path: str, threads: Optional[int] = None):
    """An ONNX Runtime CPU session with ``threads`` intra-op threads
    (default: PyTorch's count) and one inter-op thread."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    return ort.InferenceSession(path,
                                options,
                                providers=['CPUExecutionProvider'])


def export_ours(model, folder: str) -> Dict[str, Any]:
    """Export our model to ``folder``/ours.onnx; returns the export info."""
    from mmdet_conddetr.deploy.export import export_onnx
    from mmdet_conddetr.deploy.metadata import build_metadata
    path = osp.join(folder, 'ours.onnx')
    metadata = build_metadata(model.benchmark_cfg,
                              model.bbox_head.num_classes,
                              raw=False,
                              opset=None,
                              outputs=[])
    return export_onnx(model, path, metadata)


def check_ort(model, session, data, size, slack: int = 20) -> Dict[str, Any]:
    """ONNX Runtime's detections against ours, matched one to one.

    Ours are the top ``100 + slack``: with random weights the scores around
    the 100th are closer than float rounding, so which make the cut is not
    defined (trained weights do not have such ties).
    """
    test_cfg = model.bbox_head.test_cfg
    keep = test_cfg.get('max_per_img', 100)
    test_cfg['max_per_img'] = keep + slack
    try:
        with torch.no_grad():
            pred = inference_fn(model, data, 'cpu', False)()[0].pred_instances
    finally:
        test_cfg['max_per_img'] = keep
    scores, labels, boxes = session.run(None,
                                        {'image': data['inputs'].numpy()})
    matched, max_score, max_box = match_detections(
        (torch.from_numpy(scores[0]), torch.from_numpy(labels[0]),
         torch.from_numpy(boxes[0])), (pred.scores, pred.labels, pred.bboxes),
        size, TOLERANCE)
    return dict(count=int(scores.shape[1]),
                matched=matched,
                max_score_diff=max_score,
                max_box_diff_normalised=max_box,
                ok=matched == scores.shape[1])


def _time_size(models, session, size, repeats, warmup) -> Dict[str, Any]:
    data = {k: make_data(m, [size], seed=1) for k, m in models.items()}
    inputs = data[OURS]['inputs'].numpy()
    fns = {k: inference_fn(m, data[k], 'cpu', False) for k, m in models.items()}
    fns[ORT] = lambda: session.run(None, {'image': inputs})
    check = check_ort(models[OURS], session, data[OURS], size)
    log(f'ort: {size[0]}x{size[1]}, {warmup} + {repeats} interleaved rounds')
    with CpuMonitor() as monitor:
        times = time_interleaved(fns, repeats, warmup, 'cpu')
    return dict(size=list(size),
                check=check,
                others_cpu_share=monitor.others_share,
                **{k: summarize(v) for k, v in times.items()},
                ort_vs_ours=ratio(times[OURS], times[ORT]),
                ort_vs_mmdet=ratio(times[MMDET], times[ORT]),
                ours_vs_mmdet=ratio(times[MMDET], times[OURS]))


def run_ort(repeats: Optional[int] = None,
            warmup: Optional[int] = None,
            quick: bool = False,
            config: Optional[str] = None,
            mmdet_config: Optional[str] = None) -> Dict[str, Any]:
    """The ``--ort`` record: one row per image size (CPU only)."""
    setting = SETTINGS['quick' if quick else 'full']
    repeats = repeats or setting['repeats']
    warmup = setting['warmup'] if warmup is None else warmup
    log('building both models (same weights)')
    ours, theirs, weights = build_pair(setting['arch'], 'cpu', 0, config,
                                       mmdet_config)
    models = {OURS: ours.eval(), MMDET: theirs.eval()}
    with tempfile.TemporaryDirectory() as folder:
        log('exporting ours to ONNX')
        export = export_ours(ours, folder)
        session = ort_session(export['path'])
        rows = [
            _time_size(models, session, size, repeats, warmup)
            for size in (QUICK_SIZES if quick else ORT_SIZES)
        ]
    import onnxruntime
    machine = dict(machine_info('cpu'),
                   onnxruntime=onnxruntime.__version__,
                   ort_threads=session.get_session_options().
                   intra_op_num_threads)
    return dict(kind='ort',
                arch=setting['arch'],
                weights=weights,
                repeats=repeats,
                warmup=warmup,
                export=dict(export, path=osp.basename(export['path'])),
                machine=machine,
                rows=rows)
