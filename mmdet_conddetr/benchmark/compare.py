"""The A/B comparison of ours and mmdet's Conditional DETR, same weights.

In one run: (1) inference latency, batch 1; (2) one training step, batch 2;
(3) peak memory of each model and phase, each in its own subprocess;
(4) the transformer and head alone on fixed backbone features; (5) FLOPs and
achieved GFLOP/s against the machine's matmul peak; (6) the output check.
:func:`run_compare` returns the JSON record; :func:`verdict` scores it
against :data:`~.settings.TARGETS`.
"""
import time
from typing import Any, Dict, Optional

import torch

from .build import build_pair, make_data
from .flops import (achieved, analytic_attention_flops, count_model_flops,
                    matmul_gflops)
from .machine import machine_info
from .memory import measure_memory
from .outputs import check_outputs
from .profile import profile_top
from .settings import MMDET, OURS, TARGETS
from .steps import build_optim_wrapper, inference_fn, train_fn, transformer_fn
from .timing import CpuMonitor, compare_times, log, time_interleaved


def _timed(fns, repeats, warmup, device, **extra) -> Dict[str, Any]:
    with CpuMonitor() as monitor:
        times = time_interleaved(fns, repeats, warmup, device)
    return dict(compare_times(times),
                others_cpu_share=monitor.others_share,
                **extra)


def _inference_sections(models, data, sizes, run) -> Dict[str, Any]:
    """(1) and (4): inference and transformer + head, batch 1."""
    for model in models.values():
        model.eval()
    log(f'inference, batch 1, {sizes[0][0]}x{sizes[0][1]}: '
        f'{run["warmup"]} + {run["repeats"]} interleaved rounds')
    args = (run['device'], run['amp'])
    sections = {}
    for name, make in (('inference', inference_fn),
                       ('transformer', transformer_fn)):
        if name == 'transformer':
            log('transformer + head on backbone features')
        fns = {k: make(m, data[k], *args) for k, m in models.items()}
        sections[name] = _timed(fns, run['repeats'], run['warmup'],
                                run['device'], batch=1, sizes=sizes)
    return sections


def _inference_flops(models, data, arch, size, device) -> Dict[str, Any]:
    """(5) for inference and the transformer, plus the analytic count."""
    log('FLOPs (attention included)')
    flops = {}
    for key, model in models.items():
        flops[key] = {
            name: count_model_flops(make(model, data[key], device, False))
            for name, make in (('inference', inference_fn),
                               ('transformer', transformer_fn))
        }
    tokens = -(-size[0] // 32) * -(-size[1] // 32)
    flops['analytic_attention_inference'] = analytic_attention_flops(
        arch, 1, tokens)
    return flops


def _train_section(models, setting, run, flops,
                   name: str = 'train') -> Dict[str, Any]:
    """(2): one training step of each on ``setting[f'{name}_sizes']``, and
    our training FLOPs there (``flops[OURS][name]``)."""
    sizes = setting[f'{name}_sizes']
    log(f'training step, batch {len(sizes)}, {sizes}: '
        f'{run["train_warmup"]} + {run["repeats"]} interleaved rounds')
    data, fns = {}, {}
    for key, model in models.items():
        model.train()
        data[key] = make_data(model,
                              sizes,
                              setting['train_boxes'],
                              training=True,
                              seed=2)
        wrapper = build_optim_wrapper(model, run['device'], run['amp'])
        fns[key] = train_fn(model, wrapper, data[key], run['device'],
                            run['amp'])
    section = _timed(fns, run['repeats'], run['train_warmup'], run['device'],
                     batch=len(sizes), sizes=sizes)
    # Forward + backward of ours; mmdet's has the same arithmetic.
    ours, batch = models[OURS], data[OURS]
    flops[OURS][name] = count_model_flops(lambda: ours.parse_losses(
        ours(batch['inputs'], batch['data_samples'], mode='loss'))[0].
                                             backward())
    ours.zero_grad(set_to_none=True)
    return section, fns


def _profiles(models, data, train_fns, run) -> Dict[str, Any]:
    log('profiles (one call each, top 10 ops by self time)')
    out = {}
    for key, model in models.items():
        model.eval()
        args = (data[key], run['device'], run['amp'])
        out[key] = dict(
            inference=profile_top(inference_fn(model, *args), run['device']),
            transformer=profile_top(transformer_fn(model, *args),
                                    run['device']))
        model.train()
        out[key]['train'] = profile_top(train_fns[key], run['device'])
    return out


def _memory(setting, run, config, mmdet_config) -> Dict[str, Any]:
    """(3): peak memory of each model and phase, one subprocess each."""
    out: Dict[str, Any] = {}
    for phase in ('inference', 'train'):
        for key in (OURS, MMDET):
            log(f'peak memory: {key} {phase} (subprocess)')
            spec = dict(model=key,
                        phase=phase,
                        arch=setting['arch'],
                        device=run['device'],
                        amp=run['amp'],
                        config=config if key == OURS else mmdet_config,
                        sizes=[setting['infer_size']]
                        if phase == 'inference' else setting['train_sizes'],
                        boxes=setting['train_boxes'])
            out.setdefault(phase, {})[key] = measure_memory(spec)
    return out


def _run_options(setting, device, amp, repeats, warmup) -> Dict[str, Any]:
    return dict(device=device,
                amp=amp,
                repeats=repeats or setting['repeats'],
                warmup=setting['warmup'] if warmup is None else warmup,
                train_warmup=setting['train_warmup']
                if warmup is None else warmup)


def _header(setting, run) -> Dict[str, Any]:
    return dict(kind='compare',
                models={
                    OURS: 'mmdet_conddetr ConditionalDETR',
                    MMDET: 'mmdet 3.x built-in ConditionalDETR'
                },
                arch=setting['arch'],
                amp=run['amp'],
                repeats=run['repeats'],
                warmup=run['warmup'],
                train_warmup=run['train_warmup'],
                machine=machine_info(run['device']),
                targets=TARGETS)


def run_compare(setting: Dict[str, Any],
                device: str = 'cpu',
                amp: bool = False,
                repeats: Optional[int] = None,
                warmup: Optional[int] = None,
                memory: bool = True,
                profile: bool = False,
                config: Optional[str] = None,
                mmdet_config: Optional[str] = None) -> Dict[str, Any]:
    """All measurements of the A/B comparison; returns the JSON record.

    Args:
        setting (dict): One of :data:`~.settings.SETTINGS`.
        repeats, warmup (int, optional): Override the setting's rounds; the
            first training step allocates the optimizer state, so training
            has its own (smaller) default warm-up.
        memory (bool): Measure the peak memory (subprocesses).
        profile (bool): Add torch.profiler's top ops of every section.
        config, mmdet_config (str, optional): Other configs of either model.
    """
    started = time.perf_counter()
    run = _run_options(setting, device, amp, repeats, warmup)
    result = _header(setting, run)
    log('building both models (same weights)')
    ours, theirs, result['weights'] = build_pair(setting['arch'], device, 0,
                                                 config, mmdet_config)
    models = {OURS: ours, MMDET: theirs}
    sizes = [setting['infer_size']]
    data = {k: make_data(m, sizes, seed=1) for k, m in models.items()}
    log('output check')
    result['output_check'] = check_outputs(ours, theirs, data[OURS],
                                           data[MMDET])
    log('dense matmul peak')
    result['matmul_peak'] = matmul_gflops(device)
    if amp:
        result['matmul_peak_amp'] = matmul_gflops(
            device,
            torch.float16 if device.startswith('cuda') else torch.bfloat16)
    sections = _inference_sections(models, data, sizes, run)
    flops = _inference_flops(models, data, setting['arch'], sizes[0],
                             device)
    sections['train'], train_fns = _train_section(models, setting, run, flops)
    sections['train_square'], _ = _train_section(models, setting, run, flops,
                                                 'train_square')
    result['optimizer'] = {
        key: str(model.benchmark_cfg.optim_wrapper.get('optimizer'))
        for key, model in models.items()
    }
    result.update(flops=flops, sections=sections)
    result['achieved'] = achieved(result)
    if profile:
        result['profile'] = _profiles(models, data, train_fns, run)
    del models, ours, theirs, train_fns, data
    if memory:
        result['memory'] = _memory(setting, run, config, mmdet_config)
    result['elapsed_seconds'] = round(time.perf_counter() - started, 1)
    result['verdict'] = verdict(result)
    return result


def verdict(result: Dict[str, Any]) -> Dict[str, Any]:
    """Each target met or not, and whether all are."""
    sections = result['sections']
    out = {
        name:
        dict(speedup=sections[name]['speedup'],
             target=target,
             met=sections[name]['speedup'] >= target)
        for name, target in TARGETS.items()
    }
    for phase, entry in result.get('memory', {}).items():
        ours, theirs = entry[OURS]['peak_rss'], entry[MMDET]['peak_rss']
        out[f'memory_{phase}'] = dict(ratio=ours / theirs,
                                      target='<= 1',
                                      met=ours <= theirs)
    out['outputs'] = dict(met=result['output_check']['ok'])
    out['all_met'] = all(v['met'] for v in out.values())
    return out
