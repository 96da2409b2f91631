"""Speed, memory and FLOPs of this package's Conditional DETR next to
MMDetection 3.3's built-in ``ConditionalDETR``, measured side by side.

    python tools/analysis_tools/benchmark.py --out work_dirs/bench.json
    python tools/analysis_tools/benchmark.py --scale --out work_dirs/scale.json
    python tools/analysis_tools/benchmark.py --quick            # seconds, tiny
    python tools/analysis_tools/benchmark.py --device cuda --amp

Both models are built from the same architecture settings (R50, 6 + 6
layers, 300 queries, d = 256 by default) and carry the same weights: mmdet's
model is initialised (mmdet's init, plus random BN statistics and biases so
that nothing is trivially zero or one), its state dict is converted with
``mmdet_conddetr.checkpoint.convert_state_dict(source='mmdet')`` and loaded
strictly into ours. In one run the tool measures:

1. inference latency (``mode='predict'``), batch 1, an 800x1216 image;
2. one training step (forward + losses + backward + each config's optimizer
   step with its gradient clipping), batch 2, DETR-sized images;
3. the peak RSS (peak GPU memory on CUDA) of each model, inference and
   training, each in its own subprocess so the peaks do not mix;
4. the transformer and head alone, given the backbone features;
5. the FLOPs of each, attention matmuls included
   (:mod:`mmdet_conddetr.utils.flops`), and the achieved GFLOP/s against the
   dense-matmul GFLOP/s of this machine, measured in the same run;
6. an output check: per-layer logits and boxes (``mode='tensor'``) and the
   detections of both models agree to 1e-4 (boxes clipped to the image for
   both, as mmdet clips them).

Timings are interleaved (A B, then B A, ...), warm-up rounds are dropped, and
the table shows the median and the spread (min-max, interquartile range) of
``--repeats`` rounds, the speed-up as the ratio of medians and as the median
of the per-round ratios. The share of the CPUs that other processes used
during each timed section is recorded: on a shared machine re-run when it is
high. ``--scale`` instead times our model alone against the image size and
the number of queries.
"""
import argparse
import copy
import importlib.util
import json
import os
import os.path as osp
import platform
import resource
import statistics
import subprocess
import sys
import time
import warnings
from contextlib import contextmanager, nullcontext
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _make_project_importable():
    if importlib.util.find_spec('mmdet_conddetr') is None:
        sys.path.insert(0, REPO_ROOT)


_make_project_importable()
warnings.filterwarnings('ignore', message='.*pkg_resources.*')

import torch  # noqa: E402
from torch import nn  # noqa: E402

OURS, MMDET = 'ours', 'mmdet'
OURS_CONFIG = osp.join(REPO_ROOT, 'configs', 'conditional_detr', 'r50_50ep.py')
OURS_DC5_CONFIG = osp.join(REPO_ROOT, 'configs', 'conditional_detr',
                           'dc5_r50_50ep.py')
MMDET_CONFIG = 'mmdet::conditional_detr/conditional-detr_r50_8xb2-50e_coco.py'
TOLERANCE = 1e-4
RESULT_PREFIX = 'BENCHMARK_MEMORY_RESULT '

#: The measured settings. ``train`` sizes: short sides 640 and 576 (the
#: middle of DETR's 480-800 multi-scale range) at COCO's typical 4:3.
SETTINGS = {
    'full':
    dict(arch=dict(depth=50,
                   num_queries=300,
                   enc_layers=6,
                   dec_layers=6,
                   ffn=2048),
         infer_size=(800, 1216),
         train_sizes=[(640, 853), (576, 768)],
         train_boxes=[12, 7],
         repeats=10,
         warmup=2,
         train_warmup=1),
    'quick':
    dict(arch=dict(depth=50,
                   num_queries=20,
                   enc_layers=1,
                   dec_layers=2,
                   ffn=128),
         infer_size=(96, 128),
         train_sizes=[(96, 128), (80, 112)],
         train_boxes=[3, 2],
         repeats=3,
         warmup=1,
         train_warmup=1),
}
SCALE_SIZES = [(512, 512), (800, 1216), (1333, 1333)]
SCALE_QUERIES = [100, 300, 900]
TARGETS = dict(inference=1.25, transformer=1.5, train=1.15)

# --------------------------------------------------------------- building


def _quiet_mmengine():
    import logging

    from mmengine.logging import MMLogger
    logger = MMLogger.get_instance('benchmark', log_level='ERROR')
    logger.setLevel(logging.ERROR)
    warnings.filterwarnings('ignore')


def _arch_overrides(arch: Dict[str, int], which: str) -> Dict[str, Any]:
    """``merge_from_dict`` keys that set ``arch`` in either config."""
    channels = 2048 if arch['depth'] >= 50 else 512
    common = {
        'model.num_queries': arch['num_queries'],
        'model.backbone.depth': arch['depth'],
        'model.backbone.init_cfg': None,
        'model.neck.in_channels': [channels],
        'model.encoder.num_layers': arch['enc_layers'],
        'model.decoder.num_layers': arch['dec_layers'],
    }
    if which == OURS:
        common['model.encoder.layer_cfg.feedforward_dims'] = arch['ffn']
        common['model.decoder.layer_cfg.feedforward_dims'] = arch['ffn']
    else:
        common['model.encoder.layer_cfg.ffn_cfg.feedforward_channels'] = (
            arch['ffn'])
        common['model.decoder.layer_cfg.ffn_cfg.feedforward_channels'] = (
            arch['ffn'])
    return common


def load_config(which: str,
                arch: Dict[str, int],
                config: Optional[str] = None):
    from mmengine.config import Config
    from mmengine.hub import get_config
    if which == OURS:
        cfg = Config.fromfile(config or OURS_CONFIG)
    else:
        cfg = get_config(config or MMDET_CONFIG)
    cfg.merge_from_dict(_arch_overrides(arch, which))
    return cfg


def build_model(which: str,
                arch: Dict[str, int],
                device: str = 'cpu',
                config: Optional[str] = None,
                init: bool = True) -> nn.Module:
    """Our or mmdet's Conditional DETR, no pretrained weights."""
    _quiet_mmengine()
    import mmdet_conddetr  # noqa: F401
    from mmengine.registry import DefaultScope
    cfg = load_config(which, arch, config)
    if which == OURS:
        from mmdet_conddetr.registry import MODELS
        scope = 'mmdet_conddetr'
    else:
        from mmdet.registry import MODELS
        scope = 'mmdet'
    with DefaultScope.overwrite_default_scope(scope):
        model = MODELS.build(cfg.model)
    if init:
        model.init_weights()
    model.benchmark_cfg = cfg
    return model.to(device)


def randomize_weights_(model: nn.Module, seed: int = 0) -> None:
    """Random BN statistics/affines and biases on top of the init, so the
    BN folding and every bias are exercised by the output check."""
    generator = torch.Generator().manual_seed(seed)

    def fill(tensor, kind, a, b):
        values = torch.empty(tensor.shape)
        if kind == 'uniform':
            values.uniform_(a, b, generator=generator)
        else:
            values.normal_(a, b, generator=generator)
        tensor.copy_(values)

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                fill(module.weight, 'uniform', 0.5, 1.5)
                fill(module.bias, 'normal', 0.0, 0.1)
                fill(module.running_mean, 'normal', 0.0, 0.1)
                fill(module.running_var, 'uniform', 0.5, 2.0)
        for name, param in model.named_parameters():
            if name.endswith('bias') and not name.startswith('backbone.'):
                fill(param, 'normal', 0.0, 0.02)


def build_pair(arch: Dict[str, int],
               device: str = 'cpu',
               seed: int = 0,
               config: Optional[str] = None,
               mmdet_config: Optional[str] = None):
    """(ours, mmdet) with the same weights, and how they were converted."""
    from mmdet_conddetr.checkpoint import convert_state_dict
    torch.manual_seed(seed)
    theirs = build_model(MMDET, arch, 'cpu', mmdet_config)
    randomize_weights_(theirs, seed)
    ours = build_model(OURS, arch, 'cpu', config, init=False)
    state = convert_state_dict(theirs.state_dict(), source='mmdet')
    ours.load_state_dict(state, strict=True)
    info = dict(converter='mmdet_conddetr.checkpoint.convert_state_dict('
                "source='mmdet')",
                num_tensors=len(state),
                num_parameters=sum(p.numel() for p in ours.parameters()))
    return ours.to(device), theirs.to(device), info


# ------------------------------------------------------------------- data


def make_data(model: nn.Module,
              sizes: Sequence[Tuple[int, int]],
              num_boxes: Optional[Sequence[int]] = None,
              training: bool = False,
              seed: int = 0) -> Dict[str, Any]:
    """Random uint8 images (and ground truths) through the model's own data
    preprocessor: normalised, padded batch and data samples."""
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    generator = torch.Generator().manual_seed(seed)
    images, samples = [], []
    for index, (height, width) in enumerate(sizes):
        images.append(
            torch.randint(0,
                          256, (3, height, width),
                          generator=generator,
                          dtype=torch.uint8))
        sample = DetDataSample(metainfo=dict(img_shape=(height, width),
                                             ori_shape=(height, width),
                                             scale_factor=(1.0, 1.0)))
        if num_boxes is not None:
            count = num_boxes[index]
            size = torch.tensor([width, height], dtype=torch.float32)
            centre = torch.rand(count, 2, generator=generator) * size
            extent = (0.05 +
                      0.4 * torch.rand(count, 2, generator=generator)) * size
            top_left = (centre - extent / 2).clamp(min=0)
            bottom_right = torch.minimum(centre + extent / 2, size)
            sample.gt_instances = InstanceData(
                bboxes=torch.cat([top_left, bottom_right], dim=1),
                labels=torch.randint(0, 80, (count, ), generator=generator))
        samples.append(sample)
    return model.data_preprocessor(dict(inputs=images, data_samples=samples),
                                   training)


# ----------------------------------------------------------------- timing


def _sync(device: str) -> None:
    if device.startswith('cuda'):
        torch.cuda.synchronize()


class CpuMonitor:
    """Share of the machine's CPUs used by *other* processes while active
    (Linux ``/proc/stat`` minus this process's own CPU time)."""

    def __init__(self):
        self.others_share: Optional[float] = None

    @staticmethod
    def _busy_seconds() -> Optional[float]:
        try:
            with open('/proc/stat') as stat:
                fields = [float(v) for v in stat.readline().split()[1:]]
        except OSError:
            return None
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
        return (sum(fields[:8]) - idle) / os.sysconf('SC_CLK_TCK')

    def __enter__(self):
        self._busy = self._busy_seconds()
        self._own = sum(os.times()[:2])
        self._wall = time.perf_counter()
        return self

    def __exit__(self, *exc):
        busy = self._busy_seconds()
        if busy is None or self._busy is None:
            return False
        wall = time.perf_counter() - self._wall
        own = sum(os.times()[:2]) - self._own
        others = (busy - self._busy) - own
        cpus = os.cpu_count() or 1
        self.others_share = round(
            min(max(others / max(wall * cpus, 1e-9), 0.0), 1.0), 3)
        return False


def time_interleaved(fns: Dict[str, Callable[[], Any]],
                     repeats: int,
                     warmup: int,
                     device: str = 'cpu') -> Dict[str, List[float]]:
    """Seconds per call of each function, interleaved A B / B A / ..."""
    names = list(fns)
    times: Dict[str, List[float]] = {name: [] for name in names}
    for round_index in range(warmup + repeats):
        order = names if round_index % 2 == 0 else names[::-1]
        for name in order:
            _sync(device)
            start = time.perf_counter()
            fns[name]()
            _sync(device)
            elapsed = time.perf_counter() - start
            if round_index >= warmup:
                times[name].append(elapsed)
    return times


def summarize(values: Sequence[float]) -> Dict[str, float]:
    values = sorted(values)
    if len(values) >= 2:
        q1, _, q3 = statistics.quantiles(values, n=4, method='inclusive')
    else:
        q1 = q3 = values[0]
    return dict(median=statistics.median(values),
                min=values[0],
                max=values[-1],
                q1=q1,
                q3=q3,
                mean=statistics.fmean(values),
                n=len(values),
                values=list(values))


def compare_times(times: Dict[str, List[float]]) -> Dict[str, Any]:
    """Statistics of both and the speed-up of ours (mmdet time / ours)."""
    ours, theirs = times[OURS], times[MMDET]
    paired = [b / a for a, b in zip(ours, theirs)]
    return {
        OURS: summarize(ours),
        MMDET: summarize(theirs),
        'speedup': statistics.median(theirs) / statistics.median(ours),
        'speedup_paired': summarize(paired),
    }


# ----------------------------------------------------------- model steps


def amp_context(device: str, amp: bool):
    if not amp:
        return nullcontext
    dtype = torch.float16 if device.startswith('cuda') else torch.bfloat16
    return lambda: torch.autocast(device.split(':')[0], dtype=dtype)


def inference_fn(model, data, device, amp):
    ctx = amp_context(device, amp)

    def run():
        with torch.no_grad(), ctx():
            return model(data['inputs'], data['data_samples'], mode='predict')

    return run


def transformer_fn(model, data, device, amp):
    """Encoder + decoder + head on fixed backbone features."""
    ctx = amp_context(device, amp)
    with torch.no_grad(), ctx():
        feats = model.extract_feat(data['inputs'])

    def run():
        with torch.no_grad(), ctx():
            head_inputs = model.forward_transformer(feats,
                                                    data['data_samples'])
            return model.bbox_head.forward(**head_inputs)

    return run


def build_optim_wrapper(model, device, amp):
    """The optimizer wrapper of the model's own config (AdamW + clipping)."""
    from mmengine.optim import build_optim_wrapper as build
    from mmengine.registry import DefaultScope
    cfg = copy.deepcopy(model.benchmark_cfg.optim_wrapper)
    if amp and device.startswith('cuda'):
        cfg['type'] = 'AmpOptimWrapper'
    with DefaultScope.overwrite_default_scope('mmdet'):
        return build(model, cfg)


def train_fn(model, optim_wrapper, data, device, amp):
    cuda_amp = amp and device.startswith('cuda')
    ctx = (lambda: optim_wrapper.optim_context(model)) if cuda_amp else (
        amp_context(device, amp))

    def run():
        with ctx():
            losses = model(data['inputs'], data['data_samples'], mode='loss')
        loss, _ = model.parse_losses(losses)
        optim_wrapper.update_params(loss)
        return loss

    return run


# ----------------------------------------------------------- output check


def _matched_detections(a, b, size, tol):
    """Greedy one-to-one matching of two detection sets (scores, labels,
    boxes normalised by the image size). Near-tied scores may swap ranks."""
    scores_a, labels_a, boxes_a = a
    scores_b, labels_b, boxes_b = b
    scale = boxes_a.new_tensor([size[1], size[0], size[1], size[0]])
    boxes_a, boxes_b = boxes_a / scale, boxes_b / scale
    used = torch.zeros(len(scores_b), dtype=torch.bool)
    matched, max_score, max_box = 0, 0.0, 0.0
    for i in range(len(scores_a)):
        candidates = ((scores_b - scores_a[i]).abs()
                      <= tol) & (labels_b == labels_a[i]) & ~used
        if not candidates.any():
            continue
        box_error = (boxes_b - boxes_a[i]).abs().max(dim=1).values
        box_error[~candidates] = float('inf')
        j = int(box_error.argmin())
        if box_error[j] > tol:
            continue
        used[j] = True
        matched += 1
        max_score = max(max_score, float((scores_b[j] - scores_a[i]).abs()))
        max_box = max(max_box, float(box_error[j]))
    return matched, max_score, max_box


def check_outputs(ours, theirs, data_ours, data_theirs, tol=TOLERANCE):
    """Same per-layer outputs and same detections (boxes clipped for both)."""
    ours.eval()
    theirs.eval()
    with torch.no_grad():
        logits_a, boxes_a = ours(data_ours['inputs'],
                                 data_ours['data_samples'],
                                 mode='tensor')
        logits_b, boxes_b = theirs(data_theirs['inputs'],
                                   data_theirs['data_samples'],
                                   mode='tensor')
        det_a = ours(data_ours['inputs'],
                     data_ours['data_samples'],
                     mode='predict')
        det_b = theirs(data_theirs['inputs'],
                       data_theirs['data_samples'],
                       mode='predict')
    result = dict(tolerance=tol,
                  logits_shape=list(logits_a.shape),
                  logits_max_abs_diff=float((logits_a - logits_b).abs().max()),
                  boxes_max_abs_diff=float((boxes_a - boxes_b).abs().max()),
                  detections=[])
    ok = (logits_a.shape == logits_b.shape
          and result['logits_max_abs_diff'] <= tol
          and result['boxes_max_abs_diff'] <= tol)
    for sample_a, sample_b in zip(det_a, det_b):
        height, width = sample_a.ori_shape
        pred_a, pred_b = sample_a.pred_instances, sample_b.pred_instances
        # mmdet clips its boxes to the image, the official PostProcess (and
        # ours) does not: clip ours the same way for the comparison.
        boxes = pred_a.bboxes.clone().cpu()
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
        matched, max_score, max_box = _matched_detections(
            (pred_a.scores.cpu(), pred_a.labels.cpu(), boxes),
            (pred_b.scores.cpu(), pred_b.labels.cpu(), pred_b.bboxes.cpu()),
            (height, width), tol)
        same_count = len(pred_a.scores) == len(pred_b.scores)
        result['detections'].append(
            dict(count=len(pred_a.scores),
                 matched=matched,
                 max_score_diff=max_score,
                 max_box_diff_normalised=max_box))
        ok = ok and same_count and matched == len(pred_a.scores)
    result['ok'] = bool(ok)
    return result


# ------------------------------------------------------------------ FLOPs


def matmul_gflops(device: str,
                  dtype=torch.float32,
                  size: int = 2048,
                  repeats: int = 5) -> Dict[str, Any]:
    """Dense matmul throughput of this machine (the physical ceiling)."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator).to(device, dtype)
    b = torch.randn(size, size, generator=generator).to(device, dtype)
    times = []
    for index in range(repeats + 2):
        _sync(device)
        start = time.perf_counter()
        torch.mm(a, b)
        _sync(device)
        if index >= 2:
            times.append(time.perf_counter() - start)
    flops = 2 * size**3
    return dict(size=size,
                dtype=str(dtype).replace('torch.', ''),
                gflops_median=flops / statistics.median(times) / 1e9,
                gflops_best=flops / min(times) / 1e9)


def analytic_attention_flops(arch, batch, tokens) -> int:
    """Attention-core FLOPs (QK^T and AV) of one forward: encoder
    ``4 B N^2 d``, decoder self ``4 B Q^2 d``, conditional cross
    ``2 B Q N (2d) + 2 B Q N d`` (queries/keys are 2d wide)."""
    d, q = 256, arch['num_queries']
    encoder = arch['enc_layers'] * 4 * batch * tokens**2 * d
    decoder = arch['dec_layers'] * (4 * batch * q**2 * d +
                                    6 * batch * q * tokens * d)
    return encoder + decoder


def count_model_flops(fn: Callable[[], Any]) -> Dict[str, Any]:
    from mmdet_conddetr.utils.flops import count_flops
    report = count_flops(fn)
    return dict(total=report.total,
                attention=report.attention,
                by_op=dict(sorted(report.by_op.items(),
                                  key=lambda kv: -kv[1])))


# ----------------------------------------------------------------- memory


def _rss_bytes(field: str = 'VmRSS') -> Optional[int]:
    try:
        with open('/proc/self/status') as status:
            for line in status:
                if line.startswith(field + ':'):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    try:
        with open('/proc/self/clear_refs', 'w') as clear:
            clear.write('5')
        return True
    except OSError:
        return False


def memory_worker(spec: Dict[str, Any]) -> Dict[str, Any]:
    """Runs in its own process: build one model, run ``phase`` twice, report
    the peak RSS (and peak CUDA memory)."""
    device, amp = spec['device'], spec['amp']
    torch.manual_seed(0)
    model = build_model(spec['model'],
                        spec['arch'],
                        device,
                        spec.get('config'),
                        init=False)
    if spec['phase'] == 'train':
        model.train()
        data = make_data(model,
                         spec['sizes'],
                         spec['boxes'],
                         training=True,
                         seed=1)
        fn = train_fn(model, build_optim_wrapper(model, device, amp), data,
                      device, amp)
    else:
        model.eval()
        data = make_data(model, spec['sizes'], seed=1)
        fn = inference_fn(model, data, device, amp)
    before = _rss_bytes()
    peak_reset = _reset_peak_rss()
    if device.startswith('cuda'):
        torch.cuda.reset_peak_memory_stats()
    for _ in range(2):
        fn()
    _sync(device)
    peak = _rss_bytes('VmHWM')
    if peak is None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    result = dict(rss_before=before,
                  peak_rss=peak,
                  peak_rss_covers_phase_only=peak_reset,
                  weights_bytes=sum(p.numel() * p.element_size()
                                    for p in model.parameters()))
    if device.startswith('cuda'):
        result['cuda_peak_allocated'] = torch.cuda.max_memory_allocated()
    return result


def measure_memory(spec: Dict[str, Any], timeout: float = 900) -> Dict:
    """``memory_worker(spec)`` in a fresh interpreter."""
    command = [
        sys.executable,
        osp.abspath(__file__), '--memory-worker',
        json.dumps(spec)
    ]
    proc = subprocess.run(command,
                          capture_output=True,
                          text=True,
                          timeout=timeout)
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX):])
    raise RuntimeError(f'memory worker failed ({proc.returncode}): '
                       f'{proc.stderr[-2000:]}')


# ---------------------------------------------------------------- profile


def profile_top(fn: Callable[[], Any], device: str, rows: int = 10):
    """torch.profiler's top ops by self time of one call."""
    from torch.profiler import ProfilerActivity, profile
    activities = [ProfilerActivity.CPU]
    if device.startswith('cuda'):
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        fn()
        _sync(device)
    attr = 'self_device_time_total' if device.startswith(
        'cuda') else 'self_cpu_time_total'
    events = sorted(prof.key_averages(),
                    key=lambda e: getattr(e, attr),
                    reverse=True)
    total = sum(getattr(e, attr) for e in events) or 1
    return [
        dict(name=e.key,
             self_ms=round(getattr(e, attr) / 1e3, 2),
             self_pct=round(100 * getattr(e, attr) / total, 1),
             calls=e.count) for e in events[:rows]
    ]


# ------------------------------------------------------------ the compare


def machine_info(device: str) -> Dict[str, Any]:
    cpu = platform.processor()
    try:
        with open('/proc/cpuinfo') as info:
            for line in info:
                if line.startswith('model name'):
                    cpu = line.split(':', 1)[1].strip()
                    break
    except OSError:
        pass
    info = dict(
        device=device,
        cpu=cpu,
        cpu_count=os.cpu_count(),
        torch_threads=torch.get_num_threads(),
        torch=torch.__version__,
        python=platform.python_version(),
        load_average=os.getloadavg() if hasattr(os, 'getloadavg') else None)
    try:
        import mmdet
        import mmengine
        info.update(mmdet=mmdet.__version__, mmengine=mmengine.__version__)
    except ImportError:
        pass
    if device.startswith('cuda'):
        info['gpu'] = torch.cuda.get_device_name(device)
    try:
        info['git_commit'] = subprocess.run(
            ['git', 'rev-parse', '--short', 'HEAD'],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        info['git_commit'] = None
    return info


def _log(message: str) -> None:
    print(f'[benchmark {time.strftime("%H:%M:%S")}] {message}', flush=True)


def run_compare(setting: Dict[str, Any],
                device: str = 'cpu',
                amp: bool = False,
                repeats: Optional[int] = None,
                warmup: Optional[int] = None,
                memory: bool = True,
                profile: bool = False,
                config: Optional[str] = None,
                mmdet_config: Optional[str] = None) -> Dict[str, Any]:
    """All measurements of the A/B comparison; returns the JSON record."""
    started = time.perf_counter()
    repeats = repeats or setting['repeats']
    # The first training step allocates the optimizer state: one warm-up
    # round is enough there (the kernels are warm from inference).
    train_warmup = setting['train_warmup'] if warmup is None else warmup
    warmup = setting['warmup'] if warmup is None else warmup
    arch = setting['arch']
    result: Dict[str, Any] = dict(kind='compare',
                                  models={
                                      OURS: 'mmdet_conddetr ConditionalDETR',
                                      MMDET:
                                      'mmdet 3.x built-in ConditionalDETR'
                                  },
                                  arch=arch,
                                  amp=amp,
                                  repeats=repeats,
                                  warmup=warmup,
                                  train_warmup=train_warmup,
                                  machine=machine_info(device),
                                  targets=TARGETS)

    _log('building both models (same weights)')
    ours, theirs, result['weights'] = build_pair(arch, device, 0, config,
                                                 mmdet_config)
    models = {OURS: ours, MMDET: theirs}
    infer_sizes = [setting['infer_size']]
    infer_data = {
        k: make_data(m, infer_sizes, seed=1)
        for k, m in models.items()
    }

    _log('output check')
    result['output_check'] = check_outputs(ours, theirs, infer_data[OURS],
                                           infer_data[MMDET])

    _log('dense matmul peak')
    result['matmul_peak'] = matmul_gflops(device)
    if amp:
        result['matmul_peak_amp'] = matmul_gflops(
            device,
            torch.float16 if device.startswith('cuda') else torch.bfloat16)

    sections: Dict[str, Any] = {}
    for model in models.values():
        model.eval()
    _log(f'inference, batch 1, {infer_sizes[0][0]}x{infer_sizes[0][1]}: '
         f'{warmup} + {repeats} interleaved rounds')
    fns = {
        k: inference_fn(m, infer_data[k], device, amp)
        for k, m in models.items()
    }
    with CpuMonitor() as monitor:
        times = time_interleaved(fns, repeats, warmup, device)
    sections['inference'] = dict(compare_times(times),
                                 batch=1,
                                 sizes=infer_sizes,
                                 others_cpu_share=monitor.others_share)

    _log('transformer + head on backbone features')
    fns = {
        k: transformer_fn(m, infer_data[k], device, amp)
        for k, m in models.items()
    }
    with CpuMonitor() as monitor:
        times = time_interleaved(fns, repeats, warmup, device)
    sections['transformer'] = dict(compare_times(times),
                                   batch=1,
                                   sizes=infer_sizes,
                                   others_cpu_share=monitor.others_share)

    _log('FLOPs (attention included)')
    flops = {}
    for key, model in models.items():
        flops[key] = dict(inference=count_model_flops(
            inference_fn(model, infer_data[key], device, False)),
                          transformer=count_model_flops(
                              transformer_fn(model, infer_data[key], device,
                                             False)))
    height, width = infer_sizes[0]
    tokens = -(-height // 32) * -(-width // 32)
    flops['analytic_attention_inference'] = analytic_attention_flops(
        arch, 1, tokens)

    train_sizes = setting['train_sizes']
    _log(f'training step, batch {len(train_sizes)}, {train_sizes}: '
         f'{train_warmup} + {repeats} interleaved rounds')
    train_data, fns = {}, {}
    for key, model in models.items():
        model.train()
        train_data[key] = make_data(model,
                                    train_sizes,
                                    setting['train_boxes'],
                                    training=True,
                                    seed=2)
        fns[key] = train_fn(model, build_optim_wrapper(model, device, amp),
                            train_data[key], device, amp)
    result['optimizer'] = {
        key: str(model.benchmark_cfg.optim_wrapper.get('optimizer'))
        for key, model in models.items()
    }
    with CpuMonitor() as monitor:
        times = time_interleaved(fns, repeats, train_warmup, device)
    sections['train'] = dict(compare_times(times),
                             batch=len(train_sizes),
                             sizes=train_sizes,
                             others_cpu_share=monitor.others_share)
    # Training FLOPs (forward + backward) of our model; the architecture and
    # so the arithmetic is the same for mmdet's.
    train_model = models[OURS]
    flops[OURS]['train'] = count_model_flops(lambda: train_model.parse_losses(
        train_model(train_data[OURS]['inputs'],
                    train_data[OURS]['data_samples'],
                    mode='loss'))[0].backward())
    train_model.zero_grad(set_to_none=True)
    result['flops'] = flops
    result['sections'] = sections
    _achieved(result)

    if profile:
        _log('profiles (one call each, top 10 ops by self time)')
        result['profile'] = {}
        for key, model in models.items():
            model.eval()
            entry = dict(inference=profile_top(
                inference_fn(model, infer_data[key], device, amp), device),
                         transformer=profile_top(
                             transformer_fn(model, infer_data[key], device,
                                            amp), device))
            model.train()
            entry['train'] = profile_top(fns[key], device)
            result['profile'][key] = entry

    del models, ours, theirs, fns, train_data, infer_data
    if memory:
        result['memory'] = {}
        for phase in ('inference', 'train'):
            for key in (OURS, MMDET):
                _log(f'peak memory: {key} {phase} (subprocess)')
                spec = dict(
                    model=key,
                    phase=phase,
                    arch=arch,
                    device=device,
                    amp=amp,
                    config=config if key == OURS else mmdet_config,
                    sizes=infer_sizes if phase == 'inference' else train_sizes,
                    boxes=setting['train_boxes'])
                result['memory'].setdefault(phase,
                                            {})[key] = measure_memory(spec)
    result['elapsed_seconds'] = round(time.perf_counter() - started, 1)
    result['verdict'] = verdict(result)
    return result


def _achieved(result: Dict[str, Any]) -> None:
    """GFLOP/s of every timed section and its share of the matmul peak."""
    peak = result.get('matmul_peak_amp',
                      result['matmul_peak'])['gflops_median']
    flops = result['flops']
    achieved = {}
    for section, counted in (('inference', 'inference'),
                             ('transformer', 'transformer'), ('train',
                                                              'train')):
        timing = result['sections'][section]
        achieved[section] = {}
        for key in (OURS, MMDET):
            source = flops[key].get(counted) or flops[OURS][counted]
            gflops = source['total'] / timing[key]['median'] / 1e9
            achieved[section][key] = dict(gflops_per_s=gflops,
                                          fraction_of_matmul_peak=gflops /
                                          peak)
    result['achieved'] = achieved


def verdict(result: Dict[str, Any]) -> Dict[str, Any]:
    sections = result['sections']
    out = {
        name:
        dict(speedup=sections[name]['speedup'],
             target=target,
             met=sections[name]['speedup'] >= target)
        for name, target in TARGETS.items()
    }
    if 'memory' in result:
        for phase, entry in result['memory'].items():
            ours, theirs = entry[OURS]['peak_rss'], entry[MMDET]['peak_rss']
            out[f'memory_{phase}'] = dict(ratio=ours / theirs,
                                          target='<= 1',
                                          met=ours <= theirs)
    out['outputs'] = dict(met=result['output_check']['ok'])
    out['all_met'] = all(v['met'] for v in out.values())
    return out


# ------------------------------------------------------------------ scale


def run_scale(device: str = 'cpu',
              amp: bool = False,
              repeats: int = 5,
              warmup: int = 1,
              memory: bool = True,
              quick: bool = False,
              config: Optional[str] = None) -> Dict[str, Any]:
    """Latency and peak memory of our model vs image size and queries."""
    base = dict(SETTINGS['quick' if quick else 'full']['arch'])
    sizes = [(64, 64), (96, 128)] if quick else SCALE_SIZES
    queries = [10, 20] if quick else SCALE_QUERIES
    middle = sizes[1]
    cases = [(size, base['num_queries'], config, 'R50') for size in sizes]
    cases += [(middle, q, config, 'R50') for q in queries
              if q != base['num_queries']]
    if not quick:
        cases.append((middle, base['num_queries'], OURS_DC5_CONFIG, 'R50-DC5'))
    rows = []
    for size, num_queries, cfg_path, backbone in cases:
        arch = dict(base, num_queries=num_queries)
        _log(f'scale: {backbone} {size[0]}x{size[1]}, {num_queries} queries')
        model = build_model(OURS, arch, device, cfg_path).eval()
        data = make_data(model, [size], seed=1)
        fn = inference_fn(model, data, device, amp)
        with CpuMonitor() as monitor:
            times = time_interleaved({OURS: fn}, repeats, warmup, device)[OURS]
        stride = 16 if backbone.endswith('DC5') else 32
        tokens = -(-size[0] // stride) * -(-size[1] // stride)
        flops = count_model_flops(inference_fn(model, data, device, False))
        row = dict(
            backbone=backbone,
            size=list(size),
            num_queries=num_queries,
            tokens=tokens,
            latency=summarize(times),
            others_cpu_share=monitor.others_share,
            gflops=flops['total'] / 1e9,
            attention_gflops=flops['attention'] / 1e9,
            # What an implementation that materialises the encoder's
            # softmax (mmdet's nn.MultiheadAttention) allocates per layer.
            encoder_attention_matrix_mib=8 * tokens**2 * 4 / 2**20)
        del model, data, fn
        if memory:
            spec = dict(model=OURS,
                        phase='inference',
                        arch=arch,
                        device=device,
                        amp=amp,
                        config=cfg_path,
                        sizes=[size],
                        boxes=[1])
            row['memory'] = measure_memory(spec)
        rows.append(row)
    return dict(kind='scale', machine=machine_info(device), amp=amp, rows=rows)


# ------------------------------------------------------------------ print


def _fmt_time(stats: Dict[str, float]) -> str:
    return (f'{stats["median"]:.3f} s [{stats["min"]:.3f}-{stats["max"]:.3f}'
            f', IQR {stats["q3"] - stats["q1"]:.3f}]')


def _mib(value: Optional[int]) -> str:
    return '-' if value is None else f'{value / 2**20:.0f} MiB'


def format_compare(result: Dict[str, Any]) -> str:
    lines = []
    machine = result['machine']
    lines.append(
        f'Conditional DETR: ours (mmdet_conddetr) vs mmdet built-in, same '
        f'weights | {machine["device"]} {machine["cpu"]}, '
        f'{machine["torch_threads"]} threads, torch {machine["torch"]}'
        f'{", AMP" if result["amp"] else ""} | {result["repeats"]} rounds '
        f'after {result["warmup"]} warm-up')
    header = (f'{"":34s} {"ours":34s} {"mmdet":34s} {"speed-up":>17s}  '
              f'{"target":>8s}  busy')
    lines.append(header)
    lines.append('-' * len(header))
    names = dict(inference='inference (predict)',
                 transformer='transformer + head',
                 train='training step')
    for name, label in names.items():
        entry = result['sections'][name]
        sizes = 'x'.join(str(v) for v in entry['sizes'][0])
        if len(entry['sizes']) > 1:
            sizes += ' +' + str(len(entry['sizes']) - 1)
        label = f'{label} b{entry["batch"]} {sizes}'
        target = TARGETS[name]
        speed = (f'{entry["speedup"]:.2f}x '
                 f'({entry["speedup_paired"]["median"]:.2f}x)')
        mark = 'ok' if entry['speedup'] >= target else 'MISS'
        busy = entry.get('others_cpu_share')
        busy = '-' if busy is None else f'{100 * busy:.0f}%'
        lines.append(f'{label:34s} {_fmt_time(entry[OURS]):34s} '
                     f'{_fmt_time(entry[MMDET]):34s} {speed:>17s}  '
                     f'>={target:.2f} {mark:4s} {busy}')
    for phase, entry in result.get('memory', {}).items():
        ours, theirs = entry[OURS], entry[MMDET]
        ratio = ours['peak_rss'] / theirs['peak_rss']
        mark = 'ok' if ratio <= 1 else 'MISS'
        label = f'peak RSS, {phase}'
        extra_a = f'{_mib(ours["peak_rss"])} (+{_mib(ours["peak_rss"] - ours["rss_before"])})'
        extra_b = f'{_mib(theirs["peak_rss"])} (+{_mib(theirs["peak_rss"] - theirs["rss_before"])})'
        lines.append(f'{label:34s} {extra_a:34s} {extra_b:34s} '
                     f'{ratio:>16.2f}x  {"<=1":>8s} {mark}')
        if 'cuda_peak_allocated' in ours:
            lines.append(f'{"  CUDA peak allocated":34s} '
                         f'{_mib(ours["cuda_peak_allocated"]):34s} '
                         f'{_mib(theirs["cuda_peak_allocated"]):34s}')
    flops = result['flops']
    for name in ('inference', 'transformer'):
        a, b = flops[OURS][name], flops[MMDET][name]
        lines.append(
            f'{("GFLOPs " + name + " (attention)"):34s} '
            f'{a["total"] / 1e9:.1f} ({a["attention"] / 1e9:.2f}){"":20s} '
            f'{b["total"] / 1e9:.1f} ({b["attention"] / 1e9:.2f})')
    lines.append(f'{"GFLOPs train step fwd+bwd":34s} '
                 f'{flops[OURS]["train"]["total"] / 1e9:.1f} '
                 f'({flops[OURS]["train"]["attention"] / 1e9:.2f} attention)')
    lines.append(f'{"  analytic attention, inference":34s} '
                 f'{flops["analytic_attention_inference"] / 1e9:.2f} GFLOPs')
    for key in ('matmul_peak', 'matmul_peak_amp'):
        if key in result:
            peak = result[key]
            lines.append(
                f'dense matmul peak ({peak["size"]}^3 {peak["dtype"]}): '
                f'{peak["gflops_median"]:.0f} GFLOP/s median, '
                f'{peak["gflops_best"]:.0f} best')
    for name, entry in result['achieved'].items():
        a, b = entry[OURS], entry[MMDET]
        lines.append(
            f'{("achieved GFLOP/s " + name):34s} '
            f'{a["gflops_per_s"]:.0f} ({100 * a["fraction_of_matmul_peak"]:.0f}% of peak){"":14s} '
            f'{b["gflops_per_s"]:.0f} ({100 * b["fraction_of_matmul_peak"]:.0f}% of peak)'
        )
    check = result['output_check']
    dets = ', '.join(f'{d["matched"]}/{d["count"]}'
                     for d in check['detections'])
    max_score = max(d['max_score_diff'] for d in check['detections'])
    max_box = max(d['max_box_diff_normalised'] for d in check['detections'])
    lines.append(
        f'output check (tol {check["tolerance"]:g}): per-layer logits '
        f'max|d| {check["logits_max_abs_diff"]:.1e}, boxes '
        f'{check["boxes_max_abs_diff"]:.1e}; detections matched {dets} '
        f'(max|d| score {max_score:.1e}, box {max_box:.1e}) -> '
        f'{"OK" if check["ok"] else "FAIL"}')
    busy = [
        s.get('others_cpu_share') for s in result['sections'].values()
        if s.get('others_cpu_share') is not None
    ]
    if busy and max(busy) > 0.1:
        lines.append(
            f'note: other processes used up to {100 * max(busy):.0f}% of the '
            'CPUs during the timed sections; the interleaved ratios are '
            'fairer than the absolute times, re-run on a quiet machine for '
            'the latter.')
    lines.append('all targets met'
                 if result['verdict']['all_met'] else 'targets not all met: ' +
                 ', '.join(k for k, v in result['verdict'].items()
                           if isinstance(v, dict) and not v['met']))
    return '\n'.join(lines)


def format_scale(result: Dict[str, Any]) -> str:
    lines = [
        f'Scale: ours, batch 1 inference, {result["machine"]["device"]}, '
        f'{result["machine"]["torch_threads"]} threads'
    ]
    header = (f'{"backbone":8s} {"image":>10s} {"queries":>7s} {"tokens":>6s} '
              f'{"latency (median [min-max])":>30s} {"GFLOPs":>7s} '
              f'{"attn":>6s} {"peak RSS":>9s} {"+phase":>9s} '
              f'{"enc attn matrix":>15s}')
    lines += [header, '-' * len(header)]
    for row in result['rows']:
        lat = row['latency']
        memory = row.get('memory', {})
        peak = memory.get('peak_rss')
        phase = None if peak is None else peak - memory['rss_before']
        lines.append(
            f'{row["backbone"]:8s} {row["size"][0]:>4d}x{row["size"][1]:<5d} '
            f'{row["num_queries"]:>7d} {row["tokens"]:>6d} '
            f'{lat["median"]:>9.3f} s [{lat["min"]:.3f}-{lat["max"]:.3f}] '
            f'{row["gflops"]:>7.1f} {row["attention_gflops"]:>6.1f} '
            f'{_mib(peak):>9s} {_mib(phase):>9s} '
            f'{row["encoder_attention_matrix_mib"]:>11.0f} MiB')
    return '\n'.join(lines)


# ------------------------------------------------------------------- main


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--device', default='cpu', help='cpu or cuda[:N]')
    parser.add_argument(
        '--repeats',
        type=int,
        default=None,
        help='timed rounds per section (default 10; 3 with --quick; 5 with '
        '--scale)')
    parser.add_argument('--warmup',
                        type=int,
                        default=None,
                        help='untimed rounds first')
    parser.add_argument('--quick',
                        action='store_true',
                        help='tiny model and images (smoke test), seconds')
    parser.add_argument(
        '--amp',
        action='store_true',
        help='autocast (fp16 on CUDA, bf16 on CPU); the output check and '
        'the matching cost stay fp32')
    parser.add_argument(
        '--scale',
        action='store_true',
        help='our model alone: latency and memory vs image size and number '
        'of queries')
    parser.add_argument('--no-memory',
                        action='store_true',
                        help='skip the peak-memory subprocesses')
    parser.add_argument(
        '--profile',
        action='store_true',
        help='add torch.profiler top-10 ops of each section to the JSON')
    parser.add_argument('--config', help='our config (default r50_50ep.py)')
    parser.add_argument('--mmdet-config',
                        help=f'mmdet config (default {MMDET_CONFIG})')
    parser.add_argument('--out', help='write the JSON record here')
    parser.add_argument('--memory-worker', help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> Dict[str, Any]:
    args = parse_args(argv)
    if args.memory_worker:
        result = memory_worker(json.loads(args.memory_worker))
        print(RESULT_PREFIX + json.dumps(result), flush=True)
        return result
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        raise SystemExit('--device cuda: CUDA is not available here.')
    if args.scale:
        result = run_scale(args.device,
                           args.amp,
                           repeats=args.repeats or (2 if args.quick else 5),
                           warmup=1 if args.warmup is None else args.warmup,
                           memory=not args.no_memory,
                           quick=args.quick,
                           config=args.config)
        text = format_scale(result)
    else:
        setting = SETTINGS['quick' if args.quick else 'full']
        result = run_compare(setting,
                             args.device,
                             args.amp,
                             repeats=args.repeats,
                             warmup=args.warmup,
                             memory=not args.no_memory,
                             profile=args.profile,
                             config=args.config,
                             mmdet_config=args.mmdet_config)
        text = format_compare(result)
    print(text, flush=True)
    if result.get('profile'):
        for key, entry in result['profile'].items():
            for section, rows in entry.items():
                print(f'\nprofile {key} {section}:')
                for row in rows:
                    print(f'  {row["self_pct"]:5.1f}% {row["self_ms"]:9.1f} ms'
                          f' {row["calls"]:5d}x {row["name"]}')
    result['table'] = text
    if args.out:
        os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
        with open(args.out, 'w') as out:
            json.dump(result, out, indent=1)
        _log(f'wrote {args.out}')
    return result


if __name__ == '__main__':
    main()
