"""The benchmark records as text tables (printed, and kept in the JSON
record under ``table``)."""
from typing import Any, Dict, List, Optional

from .settings import MMDET, OURS, TARGETS

_LABELS = dict(inference='inference (predict)',
               transformer='transformer + head',
               train='training step',
               train_square='training step')


def fmt_time(stats: Dict[str, float]) -> str:
    """``median s [min-max, IQR]``."""
    return (f'{stats["median"]:.3f} s [{stats["min"]:.3f}-{stats["max"]:.3f}'
            f', IQR {stats["q3"] - stats["q1"]:.3f}]')


def mib(value: Optional[int]) -> str:
    return '-' if value is None else f'{value / 2**20:.0f} MiB'


def busy(share: Optional[float]) -> str:
    """Other processes' share of the CPUs as a percentage, or '-'."""
    return '-' if share is None else f'{100 * share:.0f}%'


def _title(result: Dict[str, Any]) -> str:
    machine = result['machine']
    return (f'Conditional DETR: ours (mmdet_conddetr) vs mmdet built-in, same '
            f'weights | {machine["device"]} {machine["cpu"]}, '
            f'{machine["torch_threads"]} threads, torch {machine["torch"]}'
            f'{", AMP" if result["amp"] else ""} | {result["repeats"]} rounds '
            f'after {result["warmup"]} warm-up')


def _section_lines(result: Dict[str, Any]) -> List[str]:
    header = (f'{"":34s} {"ours":34s} {"mmdet":34s} {"speed-up":>17s}  '
              f'{"target":>8s}  busy')
    lines = [header, '-' * len(header)]
    for name, label in _LABELS.items():
        entry = result['sections'][name]
        sizes = 'x'.join(str(v) for v in entry['sizes'][0])
        if len(entry['sizes']) > 1:
            sizes += ' +' + str(len(entry['sizes']) - 1)
        label = f'{label} b{entry["batch"]} {sizes}'
        target = TARGETS[name]
        speed = (f'{entry["speedup"]:.2f}x '
                 f'({entry["speedup_paired"]["median"]:.2f}x)')
        mark = 'ok' if entry['speedup'] >= target else 'MISS'
        lines.append(f'{label:34s} {fmt_time(entry[OURS]):34s} '
                     f'{fmt_time(entry[MMDET]):34s} {speed:>17s}  '
                     f'>={target:.2f} {mark:4s} '
                     f'{busy(entry.get("others_cpu_share"))}')
    return lines


def _memory_lines(result: Dict[str, Any]) -> List[str]:
    lines = []
    for phase, entry in result.get('memory', {}).items():
        ours, theirs = entry[OURS], entry[MMDET]
        ratio = ours['peak_rss'] / theirs['peak_rss']
        mark = 'ok' if ratio <= 1 else 'MISS'
        cells = [
            f'{mib(m["peak_rss"])} (+{mib(m["peak_rss"] - m["rss_before"])})'
            for m in (ours, theirs)
        ]
        lines.append(f'{"peak RSS, " + phase:34s} {cells[0]:34s} '
                     f'{cells[1]:34s} {ratio:>16.2f}x  {"<=1":>8s} {mark}')
        if 'cuda_peak_allocated' in ours:
            lines.append(f'{"  CUDA peak allocated":34s} '
                         f'{mib(ours["cuda_peak_allocated"]):34s} '
                         f'{mib(theirs["cuda_peak_allocated"]):34s}')
    return lines


def _flops_lines(result: Dict[str, Any]) -> List[str]:
    flops, lines = result['flops'], []
    for name in ('inference', 'transformer'):
        a, b = flops[OURS][name], flops[MMDET][name]
        lines.append(
            f'{("GFLOPs " + name + " (attention)"):34s} '
            f'{a["total"] / 1e9:.1f} ({a["attention"] / 1e9:.2f}){"":20s} '
            f'{b["total"] / 1e9:.1f} ({b["attention"] / 1e9:.2f})')
    train = flops[OURS]['train']
    lines.append(f'{"GFLOPs train step fwd+bwd":34s} '
                 f'{train["total"] / 1e9:.1f} '
                 f'({train["attention"] / 1e9:.2f} attention)')
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
        a, b = (f'{e["gflops_per_s"]:.0f} '
                f'({100 * e["fraction_of_matmul_peak"]:.0f}% of peak)'
                for e in (entry[OURS], entry[MMDET]))
        lines.append(f'{("achieved GFLOP/s " + name):34s} {a:34s} {b}')
    return lines


def _check_line(check: Dict[str, Any]) -> str:
    dets = ', '.join(f'{d["matched"]}/{d["count"]}'
                     for d in check['detections'])
    max_score = max(d['max_score_diff'] for d in check['detections'])
    max_box = max(d['max_box_diff_normalised'] for d in check['detections'])
    return (f'output check (tol {check["tolerance"]:g}): per-layer logits '
            f'max|d| {check["logits_max_abs_diff"]:.1e}, boxes '
            f'{check["boxes_max_abs_diff"]:.1e}; detections matched {dets} '
            f'(max|d| score {max_score:.1e}, box {max_box:.1e}) -> '
            f'{"OK" if check["ok"] else "FAIL"}')


def _closing_lines(result: Dict[str, Any]) -> List[str]:
    lines = []
    shares = [
        s.get('others_cpu_share') for s in result['sections'].values()
        if s.get('others_cpu_share') is not None
    ]
    if shares and max(shares) > 0.1:
        lines.append(
            f'note: other processes used up to {100 * max(shares):.0f}% of '
            'the CPUs during the timed sections; the interleaved ratios are '
            'fairer than the absolute times, re-run on a quiet machine for '
            'the latter.')
    missed = [
        k for k, v in result['verdict'].items()
        if isinstance(v, dict) and not v['met']
    ]
    lines.append('all targets met' if result['verdict']['all_met'] else
                 'targets not all met: ' + ', '.join(missed))
    return lines


def format_compare(result: Dict[str, Any]) -> str:
    """The A/B record of :func:`~.compare.run_compare` as a table."""
    lines = [_title(result)]
    lines += _section_lines(result)
    lines += _memory_lines(result)
    lines += _flops_lines(result)
    lines.append(_check_line(result['output_check']))
    lines += _closing_lines(result)
    return '\n'.join(lines)


def format_scale(result: Dict[str, Any]) -> str:
    """The record of :func:`~.scale.run_scale` as a table."""
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
            f'{mib(peak):>9s} {mib(phase):>9s} '
            f'{row["encoder_attention_matrix_mib"]:>11.0f} MiB')
    return '\n'.join(lines)


def format_ort(result: Dict[str, Any]) -> str:
    """The record of :func:`~.ort.run_ort` as a table."""
    machine = result['machine']
    lines = [
        f'ONNX Runtime {machine["onnxruntime"]} vs ours (PyTorch '
        f'{machine["torch"]}) vs mmdet built-in, batch 1, same weights | '
        f'{machine["cpu"]}, {machine["torch_threads"]} torch threads = '
        f'{machine["ort_threads"]} ORT threads | {result["repeats"]} rounds '
        f'after {result["warmup"]} warm-up | ONNX file '
        f'{mib(result["export"]["bytes"])}, opset {result["export"]["opset"]}'
    ]
    header = (f'{"image":>10s} {"ONNX Runtime":34s} {"ours (PyTorch)":34s} '
              f'{"mmdet":34s} {"ORT/ours":>9s} {"ORT/mmdet":>9s} '
              f'{"ours/mmdet":>10s}  check  busy')
    lines += [header, '-' * len(header)]
    for row in result['rows']:
        check = row['check']
        lines.append(
            f'{row["size"][0]:>4d}x{row["size"][1]:<5d} '
            f'{fmt_time(row["ort"]):34s} {fmt_time(row["ours"]):34s} '
            f'{fmt_time(row["mmdet"]):34s} '
            f'{row["ort_vs_ours"]["speedup"]:>8.2f}x '
            f'{row["ort_vs_mmdet"]["speedup"]:>8.2f}x '
            f'{row["ours_vs_mmdet"]["speedup"]:>9.2f}x  '
            f'{check["matched"]}/{check["count"]} '
            f'{busy(row.get("others_cpu_share"))}')
    lines.append('speed-ups are time ratios of medians (>1: the first is '
                 'faster); check: ORT detections matching ours to 1e-4.')
    return '\n'.join(lines)
