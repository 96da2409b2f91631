"""`make demo`'s schedule planning (tools/demo/demo_budget.py): the most
epochs that fit the time left, never more than the configs', the same
learning-rate drop fraction, and iteration times read from mmengine logs."""
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / 'tools' / 'demo'))
from demo_budget import (SUSTAINED_SLOWDOWN, VAL_BATCH_COST,  # noqa: E402
                         iteration_seconds, plan_epochs)

SCHEDULE = dict(iters_per_epoch=125, val_batches=25, val_interval=4,
                max_epochs=68, lr_drop_epoch=62)


def epoch_seconds(sec_per_iter):
    return SUSTAINED_SLOWDOWN * sec_per_iter * (125 + VAL_BATCH_COST * 25 / 4)


def test_full_schedule_when_it_fits():
    plan = plan_epochs(0.08, **SCHEDULE, seconds_left=900, fixed_seconds=40)
    assert (plan.epochs, plan.lr_drop_epoch, plan.full_schedule) == (68, 62,
                                                                    True)
    assert plan.predicted_minutes * 60 == pytest.approx(
        40 + 68 * epoch_seconds(0.08))
    assert plan.cfg_options() == [
        'train_cfg.max_epochs=68', 'param_scheduler.1.end=68',
        'param_scheduler.1.milestones=[62]'
    ]


def test_slow_machine_gets_fewer_epochs_that_fit():
    left, fixed = 690, 60
    plan = plan_epochs(0.14, **SCHEDULE, seconds_left=left, fixed_seconds=fixed)
    assert not plan.full_schedule
    assert plan.epochs % 4 == 0 and plan.epochs < 68
    # fits, and four more epochs would not
    assert fixed + plan.epochs * epoch_seconds(0.14) <= left
    assert fixed + (plan.epochs + 4) * epoch_seconds(0.14) > left
    # the drop sits at the configs' fraction of the schedule (62/68)
    assert plan.lr_drop_epoch == int(plan.epochs * 62 / 68)
    assert plan.predicted_minutes * 60 <= left


def test_never_less_than_one_validation_interval():
    plan = plan_epochs(5.0, **SCHEDULE, seconds_left=60, fixed_seconds=100)
    assert plan.epochs == 4 and 1 <= plan.lr_drop_epoch < 4


def test_iteration_seconds_reads_median_after_warmup(tmp_path):
    for name, times in (('a', [9.0, 0.1, 0.3, 0.2]), ('b', [9.0, 0.5, 0.4])):
        log = tmp_path / name / '20261202_000000' / 'vis_data'
        log.mkdir(parents=True)
        rows = [dict(time=t, step=5 * i) for i, t in enumerate(times)]
        rows.append({'coco/bbox_mAP': 0.1, 'step': 1})
        (log / 'scalars.json').write_text(
            '\n'.join(json.dumps(row) for row in rows) + '\n')
    assert iteration_seconds([tmp_path / 'a', tmp_path / 'b']) == [
        pytest.approx(0.2), pytest.approx(0.45)
    ]
    with pytest.raises(FileNotFoundError, match='calibration'):
        iteration_seconds([tmp_path / 'missing'])
