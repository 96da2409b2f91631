"""`make demo`: Conditional DETR vs DETR, trained from scratch on this CPU.

Generates the synthetic shapes data (once), trains Conditional DETR and
plain DETR at the same budget, evaluates Conditional DETR, and writes to
``work_dirs/demo/``:

* ``conditional_detr/``, ``detr/``  training work dirs (checkpoints, logs)
* ``metrics.json``                  COCO bbox metrics of Conditional DETR
* ``detections/``                   val images: ground truth | detections
* ``detections.png``                the first eight of them in one figure
* ``attention.png``                 cross-attention maps of the top detections
* ``convergence.png``               val mAP vs epoch of both detectors

Every step is one of the repository's tools, printed before it runs, so each
can be re-run alone. The two trainings run at the same time, each on half of
the CPU cores (``--sequential`` runs them one after the other with all of
them): the small models use two threads poorly, so on the 2-core machine the
pair finishes in about 0.7 of the sequential time. Conditional DETR's log is
printed; plain DETR's goes to ``detr.log`` in the output folder.

The configs' schedule is trained when it fits the wall-time budget
(``--minutes``); on a slower machine both detectors train for the same,
smaller number of epochs that fits (``demo_budget.py``; ``--minutes 0`` always
trains the configs' schedule).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from demo_budget import VAL_BATCH_COST, Plan, iteration_seconds, plan_epochs

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / 'configs' / 'conditional_detr'
# The 15-minute bar of the demo with 30 % headroom for slower days.
BUDGET_MINUTES = 11.5
# Iterations timed before the trainings to plan their schedule: two short
# epochs over the same images, the first one (cold image cache, warm-up)
# untimed.
CALIBRATION_ITERS = 10


def run(*args: str) -> None:
    command = [sys.executable, *args]
    print('\n>>> ' + ' '.join(command), flush=True)
    subprocess.run(command, check=True, cwd=ROOT)


def train_concurrently(jobs, out: Path) -> None:
    """Run each (label, command) of ``jobs`` at once, each with an equal
    share of the cores; the first prints to the console, the others to
    ``<out>/<label>.log``. If one fails, the others are stopped and the
    failed one's log ends the demo."""
    threads = max(1, (os.cpu_count() or 1) // len(jobs))
    env = dict(os.environ, OMP_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads))
    running = []
    for i, (label, command) in enumerate(jobs):
        command = [sys.executable, *command]
        log = None if i == 0 else out / f'{label.lower().replace(" ", "_")}.log'
        print(f'\n>>> [{label}, {threads} thread(s)'
              + (f', log: {log}' if log else '') + '] ' + ' '.join(command),
              flush=True)
        stream = open(log, 'w') if log else None
        running.append((label, log, stream,
                        subprocess.Popen(command, cwd=ROOT, env=env,
                                         stdout=stream, stderr=stream)))
    failed = None
    while failed is None and any(p.poll() is None for *_, p in running):
        time.sleep(1)
        failed = next((job for job in running if job[3].poll()), None)
    for _, _, stream, proc in running:
        if proc.poll() is None:  # a sibling failed: stop the others
            proc.terminate()
            proc.wait()
        if stream:
            stream.close()
    if failed is not None:
        label, log = failed[:2]
        tail = log.read_text()[-3000:] if log else '(its log is above)'
        raise SystemExit(f'\n{label} training failed:\n{tail}')


def montage(images, out_file: Path, columns: int = 2) -> None:
    """Tile equally sized images (files) row by row into one PNG."""
    import cv2
    import numpy as np
    tiles = [cv2.imread(str(path)) for path in images]
    blank = np.full_like(tiles[0], 255)
    tiles += [blank] * (-len(tiles) % columns)
    rows = [
        np.concatenate(tiles[i:i + columns], axis=1)
        for i in range(0, len(tiles), columns)
    ]
    cv2.imwrite(str(out_file), np.concatenate(rows, axis=0))


def shrink_png(path: Path, max_width: int) -> None:
    """Rewrite a figure as an at most ``max_width`` wide 256-colour PNG:
    the committed copies in docs/demo/ stay a few hundred KB."""
    from PIL import Image
    image = Image.open(path).convert('RGB')
    if image.width > max_width:
        size = (max_width, round(image.height * max_width / image.width))
        image = image.resize(size, Image.LANCZOS)
    image.quantize(256, method=Image.Quantize.MEDIANCUT).save(
        path, optimize=True)


def newest(pattern: str, folder: Path) -> Path:
    found = sorted(folder.glob(pattern), key=lambda p: p.stat().st_mtime)
    if not found:
        raise SystemExit(f'Expected {pattern} under {folder}: the step before '
                         'did not write it.')
    return found[-1]


def count_images(data: Path, split: str) -> int:
    annotations = data / 'annotations' / f'instances_{split}.json'
    return len(json.loads(annotations.read_text())['images'])


def plan_schedule(runs, data_options, out: Path, data: Path,
                  seconds_left: float, sequential: bool) -> Plan:
    """Times a few iterations of the trainings, run as the demo will run
    them (together or one after the other), and plans the epochs that fit
    ``seconds_left`` (see demo_budget.py)."""
    from mmengine.config import Config
    cfg = Config.fromfile(str(CONFIGS / runs['Conditional DETR'][0]))
    batch = cfg.train_dataloader.batch_size
    folder = out / 'calibration'
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    options = [
        *data_options, 'train_dataloader.dataset.indices='
        f'{CALIBRATION_ITERS * batch}', 'train_cfg.max_epochs=2',
        'train_cfg.val_begin=1000', 'default_hooks.logger.interval=5',
        'log_processor.window_size=5'
    ]
    jobs = [(label, [
        'tools/train.py',
        str(CONFIGS / config), '--work-dir',
        str(folder / work_dir.name), '--cfg-options', *options
    ]) for label, (config, work_dir) in runs.items()]
    print(f'\nTiming {CALIBRATION_ITERS} iterations of each training to fit '
          f'the schedule into the {seconds_left / 60:.1f} min left',
          flush=True)
    started = time.time()
    if sequential or len(jobs) == 1:
        for _, command in jobs:
            run(*command)
    else:
        train_concurrently(jobs, folder)
    times = iteration_seconds(
        [folder / work.name for _, work in runs.values()],
        skip_first=CALIBRATION_ITERS // 5)
    per_iter = sum(times) if sequential else max(times)
    # Process start-up and checkpointing: what the calibration took beyond
    # its iterations; paid again by the trainings, the test and the figures.
    rounds = len(jobs) if sequential else 1
    startup = max(0.0, (time.time() - started -
                        2 * CALIBRATION_ITERS * per_iter) / rounds)
    val_batches = -(-count_images(data, 'val') // cfg.val_dataloader.batch_size)
    plan = plan_epochs(
        per_iter,
        iters_per_epoch=-(-count_images(data, 'train') // batch),
        val_batches=val_batches,
        val_interval=cfg.train_cfg.val_interval,
        max_epochs=cfg.train_cfg.max_epochs,
        lr_drop_epoch=cfg.param_scheduler[1]['milestones'][0],
        seconds_left=seconds_left - (time.time() - started),
        fixed_seconds=(rounds + 3) * startup +
        VAL_BATCH_COST * val_batches * per_iter)
    shutil.rmtree(folder, ignore_errors=True)
    print(f'{per_iter:.3f} s per iteration: ' + (
        f'the configs\' schedule ({plan.epochs} epochs, lr drop at '
        f'{plan.lr_drop_epoch}) fits, ~{plan.predicted_minutes:.1f} min'
        if plan.full_schedule else
        f'{plan.epochs} epochs (lr drop at {plan.lr_drop_epoch}) fit instead '
        f'of the configs\' {cfg.train_cfg.max_epochs}; expect a lower mAP '
        f'(--minutes 0 trains them all)'), flush=True)
    return plan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default='work_dirs/demo')
    parser.add_argument('--data', default='data/shapes')
    parser.add_argument('--skip-detr', action='store_true',
                        help='train only Conditional DETR (no comparison)')
    parser.add_argument('--sequential', action='store_true',
                        help='train the two detectors one after the other')
    parser.add_argument('--minutes', type=float, default=BUDGET_MINUTES,
                        help='wall-time budget of the whole demo: fewer '
                        'epochs than the configs\' when those do not fit '
                        '(0: always the configs\' schedule)')
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
    for _, work_dir in runs.values():
        # The demo's own runs: a new demo replaces them (tools/train.py
        # refuses to start over a work dir that holds another run).
        if work_dir.exists():
            print(f'Removing the previous demo run in {work_dir}')
            shutil.rmtree(work_dir)
    if args.minutes > 0 and not any(
            option.startswith('train_cfg.max_epochs=')
            for option in args.cfg_options):
        plan = plan_schedule(runs, data_options, out, data,
                             args.minutes * 60 - (time.time() - start),
                             args.sequential)
        data_options += plan.cfg_options()
    # Checkpoints with the validations, every 4 epochs (~40 s of training)
    # rather than every epoch: each save also formats the whole config with
    # yapf (~0.4 s), 5 % of an epoch.
    train_options = [*data_options, 'default_hooks.checkpoint.interval=4']
    trainings = [(label, [
        'tools/train.py',
        str(CONFIGS / config), '--work-dir',
        str(work_dir), '--cfg-options', *train_options
    ]) for label, (config, work_dir) in runs.items()]
    if args.sequential or len(trainings) == 1:
        for _, command in trainings:
            run(*command)
    else:
        train_concurrently(trainings, out)

    config, work_dir = runs['Conditional DETR']
    checkpoint = (work_dir / 'last_checkpoint').read_text().strip()
    if (out / 'detections').exists():
        shutil.rmtree(out / 'detections')
    run('tools/test.py', str(CONFIGS / config), checkpoint, '--work-dir',
        str(out / 'test'), '--show-dir', str(out / 'detections'),
        '--cfg-options', *data_options)
    drawings = sorted((out / 'detections').rglob('*.png'))
    montage(drawings[:8], out / 'detections.png')
    shrink_png(out / 'detections.png', 512)
    metrics_log = newest('*/*.json', out / 'test')
    metrics = json.loads(metrics_log.read_text())
    (out / 'metrics.json').write_text(json.dumps(metrics, indent=2) + '\n')

    first_val = sorted((data / 'val').glob('*.png'))[0]
    run('tools/analysis_tools/visualize_attention.py', str(CONFIGS / config),
        checkpoint, str(first_val), '--out', str(out / 'attention.png'))
    shrink_png(out / 'attention.png', 1400)
    curves = [f'{label}={work}' for label, (_, work) in runs.items()]
    run('tools/analysis_tools/convergence.py',
        *[arg for curve in curves for arg in ('--run', curve)], '--out',
        str(out / 'convergence.png'))

    print(f'\nDemo finished in {(time.time() - start) / 60:.1f} min. '
          f'Conditional DETR bbox mAP: {metrics.get("coco/bbox_mAP")}')
    print(f'  checkpoint:   {checkpoint}')
    for name in ('metrics.json', 'detections', 'detections.png',
                 'attention.png', 'convergence.png'):
        print(f'  {name + ":":<16}{out / name}')


if __name__ == '__main__':
    main()
