"""Plot validation mAP against epoch for several training runs in one PNG.

    python tools/analysis_tools/convergence.py \
        --run "Conditional DETR=work_dirs/demo/conditional_detr" \
        --run "DETR=work_dirs/demo/detr" --out convergence.png

Each ``--run LABEL=WORK_DIR`` reads the newest mmengine log of that work dir
(``<timestamp>/vis_data/scalars.json``). With ``--train CONFIG`` for a run
(``--run LABEL=WORK_DIR=CONFIG``) the run is trained first with tools/train.py.
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Tuple

METRIC = 'coco/bbox_mAP'


def read_curve(work_dir: Path) -> List[Tuple[int, float]]:
    """(epoch, mAP) of every validation in the newest log of ``work_dir``."""
    logs = sorted(work_dir.glob('*/vis_data/scalars.json'))
    if not logs:
        raise SystemExit(
            f'No mmengine log (*/vis_data/scalars.json) under {work_dir}: '
            'train the run first, or pass its config as LABEL=WORK_DIR=CONFIG.')
    curve = []
    with open(logs[-1]) as log:
        for line in log:
            record = json.loads(line)
            if METRIC in record:
                curve.append((int(record['step']), float(record[METRIC])))
    if not curve:
        raise SystemExit(f'{logs[-1]} has no {METRIC}: no validation ran.')
    return curve


def parse_run(text: str) -> Tuple[str, Path, str]:
    parts = text.split('=')
    if len(parts) not in (2, 3) or not all(parts):
        raise argparse.ArgumentTypeError(
            f'--run expects LABEL=WORK_DIR or LABEL=WORK_DIR=CONFIG, got '
            f'{text!r}')
    config = parts[2] if len(parts) == 3 else ''
    return parts[0], Path(parts[1]), config


def plot(curves: Dict[str, List[Tuple[int, float]]], out: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5.5, 3.8))
    for label, curve in curves.items():
        epochs, values = zip(*curve)
        axis.plot(epochs, values, marker='o', label=f'{label} '
                  f'(final {values[-1]:.3f})')
    axis.set_xlabel('epoch')
    axis.set_ylabel('val bbox mAP@[.5:.95]')
    axis.set_title('Convergence at the same budget')
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(out, dpi=120)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--run', type=parse_run, action='append',
                        required=True, metavar='LABEL=WORK_DIR[=CONFIG]')
    parser.add_argument('--out', default='convergence.png')
    args = parser.parse_args()
    curves = {}
    for label, work_dir, config in args.run:
        if config:
            subprocess.run([
                sys.executable, str(Path(__file__).parents[1] / 'train.py'),
                config, '--work-dir', str(work_dir)
            ], check=True)
        curves[label] = read_curve(work_dir)
    plot(curves, args.out)
    for label, curve in curves.items():
        print(f'{label}: ' + ', '.join(f'ep{e} {m:.3f}' for e, m in curve))
    print(f'Convergence plot written to {args.out}')


if __name__ == '__main__':
    main()
