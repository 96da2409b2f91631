"""`make demo`: Conditional DETR vs DETR, trained from scratch on this CPU.

Generates the synthetic shapes data (once), trains Conditional DETR and
plain DETR at the same budget, evaluates Conditional DETR, and writes to
``work_dirs/demo/``:

* ``conditional_detr/``, ``detr/``  training work dirs (checkpoints, logs)
* ``metrics.json``                  COCO bbox metrics of Conditional DETR
* ``detections/``                   val images with the detected boxes
* ``attention.png``                 cross-attention maps of the top detections
* ``convergence.png``               val mAP vs epoch of both detectors

Every step is one of the repository's tools, printed before it runs, so each
can be re-run alone.
"""
import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / 'configs' / 'conditional_detr'


def run(*args: str) -> None:
    command = [sys.executable, *args]
    print('\n>>> ' + ' '.join(command), flush=True)
    subprocess.run(command, check=True, cwd=ROOT)


def newest(pattern: str, folder: Path) -> Path:
    found = sorted(folder.glob(pattern), key=lambda p: p.stat().st_mtime)
    if not found:
        raise SystemExit(f'Expected {pattern} under {folder}: the step before '
                         'did not write it.')
    return found[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default='work_dirs/demo')
    parser.add_argument('--data', default='data/shapes')
    parser.add_argument('--skip-detr', action='store_true',
                        help='train only Conditional DETR (no comparison)')
    parser.add_argument('--cfg-options', nargs='+', default=[],
                        help='extra key=value overrides for every training '
                        'and test, e.g. train_cfg.max_epochs=2 for a quick look')
    args = parser.parse_args()
    out, data = ROOT / args.out, ROOT / args.data
    out.mkdir(parents=True, exist_ok=True)
    start = time.time()

    if not (data / 'annotations' / 'instances_val.json').is_file():
        run('tools/misc/make_shapes_dataset.py', '--out', str(data))
    data_options = [
        f'train_dataloader.dataset.data_root={data}/',
        f'val_dataloader.dataset.data_root={data}/',
        f'test_dataloader.dataset.data_root={data}/',
        f'val_evaluator.ann_file={data}/annotations/instances_val.json',
        f'test_evaluator.ann_file={data}/annotations/instances_val.json',
        *args.cfg_options,
    ]
    runs = {'Conditional DETR': ('shapes_demo.py', out / 'conditional_detr')}
    if not args.skip_detr:
        runs['DETR'] = ('shapes_demo_detr.py', out / 'detr')
    for config, work_dir in runs.values():
        run('tools/train.py', str(CONFIGS / config), '--work-dir',
            str(work_dir), '--cfg-options', *data_options)

    config, work_dir = runs['Conditional DETR']
    checkpoint = (work_dir / 'last_checkpoint').read_text().strip()
    if (out / 'detections').exists():
        shutil.rmtree(out / 'detections')
    run('tools/test.py', str(CONFIGS / config), checkpoint, '--work-dir',
        str(out / 'test'), '--show-dir', str(out / 'detections'),
        '--cfg-options', *data_options)
    metrics_log = newest('*/*.json', out / 'test')
    metrics = json.loads(metrics_log.read_text())
    (out / 'metrics.json').write_text(json.dumps(metrics, indent=2) + '\n')

    first_val = sorted((data / 'val').glob('*.png'))[0]
    run('tools/analysis_tools/visualize_attention.py', str(CONFIGS / config),
        checkpoint, str(first_val), '--out', str(out / 'attention.png'))
    curves = [f'{label}={work}' for label, (_, work) in runs.items()]
    run('tools/analysis_tools/convergence.py',
        *[arg for curve in curves for arg in ('--run', curve)], '--out',
        str(out / 'convergence.png'))

    print(f'\nDemo finished in {(time.time() - start) / 60:.1f} min. '
          f'Conditional DETR bbox mAP: {metrics.get("coco/bbox_mAP")}')
    print(f'  checkpoint:   {checkpoint}')
    for name in ('metrics.json', 'detections', 'attention.png',
                 'convergence.png'):
        print(f'  {name + ":":<14}{out / name}')


if __name__ == '__main__':
    main()
