"""How many epochs of the shapes demo fit the wall-time budget of `make demo`.

The demo's configs train for a fixed schedule (``max_epochs`` with the
learning rate dropped at ``lr_drop_epoch``), but this machine's speed varies
from day to day by ~1.8x. Rather than overrun the budget on a slow day, the
demo first times a few iterations of both trainings running together (as they
will), then trains both detectors for the same number of epochs: the configs'
schedule when it fits, otherwise the most epochs that fit, with the learning
rate dropped at the same fraction of the schedule. Both detectors always get
exactly the same iterations.
"""
import json
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import List, Sequence

#: Validation batches relative to training iterations: a val batch is a
#: forward pass only (~1/3 of a training step) plus its share of the COCO
#: evaluation.
VAL_BATCH_COST = 0.5
#: Sustained iterations are slower than the calibration's short burst: the
#: demo of 2026-12-02 iterated at 0.100 s after a calibration of 0.090 s.
SUSTAINED_SLOWDOWN = 1.15


@dataclass
class Plan:
    """The schedule both trainings run, and why."""
    epochs: int
    lr_drop_epoch: int
    predicted_minutes: float
    full_schedule: bool

    def cfg_options(self) -> List[str]:
        """``--cfg-options`` that set this schedule in the demo configs
        (``param_scheduler[1]`` is their step decay)."""
        return [
            f'train_cfg.max_epochs={self.epochs}',
            f'param_scheduler.1.end={self.epochs}',
            f'param_scheduler.1.milestones=[{self.lr_drop_epoch}]',
        ]


def iteration_seconds(work_dirs: Sequence[Path],
                      skip_first: int = 1) -> List[float]:
    """Each run's median iteration time from mmengine's
    ``vis_data/scalars.json`` log of a calibration run (the first
    ``skip_first`` logged windows, which include warm-up, are skipped)."""
    times = []
    for work_dir in work_dirs:
        logs = sorted(Path(work_dir).glob('*/vis_data/scalars.json'))
        if not logs:
            raise FileNotFoundError(f'no scalars.json under {work_dir}: the '
                                    'calibration run did not log')
        rows = [json.loads(line) for line in logs[-1].read_text().split('\n')
                if line.strip()]
        values = [row['time'] for row in rows if 'time' in row][skip_first:]
        if not values:
            raise ValueError(f'{logs[-1]} holds no iteration times')
        times.append(median(values))
    return times


def plan_epochs(sec_per_iter: float, iters_per_epoch: int, val_batches: int,
                val_interval: int, max_epochs: int, lr_drop_epoch: int,
                seconds_left: float, fixed_seconds: float) -> Plan:
    """The longest schedule, at most the configs', that fits the time left.

    Args:
        sec_per_iter: seconds per training iteration with both runs going,
            as calibrated (a short burst; see :data:`SUSTAINED_SLOWDOWN`).
        iters_per_epoch: training iterations per epoch.
        val_batches: batches of one validation.
        val_interval: epochs between validations (the schedule is a multiple
            of it, so the last epoch is validated).
        max_epochs, lr_drop_epoch: the configs' schedule.
        seconds_left: wall time left in the budget.
        fixed_seconds: time that does not grow with the epochs (process
            start-up, the final test, the figures).

    Returns:
        The plan; at least ``val_interval`` epochs even when they do not fit.
    """
    epoch_seconds = SUSTAINED_SLOWDOWN * sec_per_iter * (
        iters_per_epoch + VAL_BATCH_COST * val_batches / val_interval)
    fits = max(0.0, seconds_left - fixed_seconds) / epoch_seconds
    epochs = max(val_interval,
                 min(max_epochs, int(fits) // val_interval * val_interval))
    # the configs' drop for their own schedule, else at the same fraction
    drop = max(1, min(epochs - 1, epochs * lr_drop_epoch // max_epochs))
    predicted = (fixed_seconds + epochs * epoch_seconds) / 60
    return Plan(epochs, drop, predicted, epochs == max_epochs)
