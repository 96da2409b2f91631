"""End-to-end tests of tools/train.py, tools/test.py and the dist_*.sh
launchers on a tiny synthetic shapes dataset (CPU only): one short training
run, its evaluation single- and multi-process.

The tests run the real command-line tools in subprocesses (see
tests/helpers/tool_runs.py), except one that fails before any work. The
2-process runs start early and run in the background while the
single-process ones do: each run mostly imports torch and mmdet on one core.
"""
import glob
import os.path as osp
import pickle

import pytest
from helpers.tool_run import tool_error
from helpers.tool_runs import (ITERS_PER_EPOCH, NUM_VAL, REPO_ROOT, TOOLS,
                               Background, data_options, eval_cmd,
                               eval_metrics, final_checkpoint_only, free_port,
                               load_ckpt, run, run_logs, same_batches_options,
                               scalars, selected, tool_env, train_cmd,
                               train_options)
from helpers.tool_runs import model_config, shapes_root  # noqa: F401


@pytest.fixture(scope='module', autouse=True)
def dist_train(model_config, shapes_root, tmp_path_factory, request):
    """tools/dist_train.sh, 2 CPU processes, started as the module starts:
    it trains while the single-process runs below do."""
    if not selected(request, 'test_dist_train_on_cpu_uses_gloo'):
        yield None
        return
    work_dir = str(tmp_path_factory.mktemp('dist_train'))
    job = Background([
        'bash',
        osp.join(TOOLS, 'dist_train.sh'), model_config, 2, '--work-dir',
        work_dir, '--cfg-options', *data_options(shapes_root),
        *train_options(2, 2), *final_checkpoint_only(2)
    ],
                     env=tool_env(PORT=free_port()))
    yield dict(work_dir=work_dir, job=job)
    job.stop()


@pytest.fixture(scope='module')
def trained(model_config, shapes_root, tmp_path_factory):
    """One short single-process training run: (work_dir, checkpoint)."""
    work_dir = str(tmp_path_factory.mktemp('train'))
    epochs = 8
    proc = run(
        train_cmd(model_config, work_dir, *data_options(shapes_root),
                  *train_options(epochs, epochs),
                  *same_batches_options(model_config),
                  *final_checkpoint_only(epochs)))
    ckpt = osp.join(work_dir, f'epoch_{epochs}.pth')
    return dict(work_dir=work_dir,
                ckpt=ckpt,
                epochs=epochs,
                stdout=proc.stdout)


@pytest.fixture(scope='module')
def single_test_metrics(model_config, shapes_root, trained, tmp_path_factory,
                        request):
    """tools/test.py on the trained checkpoint; dist_test.sh's 2-process
    evaluation of the same checkpoint is started first and runs meanwhile
    (``dist``, None when its test is not run)."""
    dist = None
    if selected(request, 'test_dist_test_matches_single_process'):
        dist_dir = str(tmp_path_factory.mktemp('dist_test'))
        dist = dict(work_dir=dist_dir,
                    job=Background([
                        'bash',
                        osp.join(TOOLS, 'dist_test.sh'), model_config,
                        trained['ckpt'], 2, '--work-dir', dist_dir,
                        '--cfg-options', *data_options(shapes_root)
                    ],
                                   env=tool_env(PORT=free_port())))
    work_dir = str(tmp_path_factory.mktemp('test_single'))
    out = osp.join(work_dir, 'results.pkl')
    try:
        run(
            eval_cmd(model_config,
                     trained['ckpt'],
                     work_dir,
                     *data_options(shapes_root),
                     extra=['--out', out, '--show-dir', 'painted']))
        yield dict(metrics=eval_metrics(work_dir),
                   out=out,
                   work_dir=work_dir,
                   dist=dist)
    finally:
        if dist is not None:
            dist['job'].stop()


def test_train_writes_checkpoint_and_log(trained):
    work_dir = trained['work_dir']
    assert osp.isfile(trained['ckpt'])
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        assert f.read().strip() == trained['ckpt']
    log = run_logs(work_dir)[-1]
    assert 'Epoch(train)' in log
    assert f'Saving checkpoint at {trained["epochs"]} epochs' in log
    assert 'coco/bbox_mAP' in log  # validation ran at the end
    # the config is dumped next to the checkpoints
    assert glob.glob(osp.join(work_dir, '*.py'))

    ckpt = load_ckpt(trained['ckpt'])
    assert ckpt['meta']['epoch'] == trained['epochs']
    assert ckpt['meta']['iter'] == trained['epochs'] * ITERS_PER_EPOCH
    assert ckpt['meta']['dataset_meta']['classes'] == ('circle', 'square',
                                                       'triangle', 'star')
    assert any(k.startswith('backbone.') for k in ckpt['state_dict'])


def test_train_loss_decreases(trained):
    records = scalars(trained['work_dir'])
    losses = [r['loss'] for r in records]
    assert len(losses) == trained['epochs'] * ITERS_PER_EPOCH
    assert all(v == v and abs(v) < 1e4 for v in losses)  # finite
    # Every epoch sees the same batches: compare batch by batch.
    first = losses[:ITERS_PER_EPOCH]
    last = losses[-ITERS_PER_EPOCH:]
    assert all(b < a for a, b in zip(first, last)), (first, last)
    assert sum(last) < 0.85 * sum(first), losses


def test_test_tool_reports_coco_metrics(single_test_metrics):
    metrics = single_test_metrics['metrics']
    for key in ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/bbox_mAP_75'):
        assert key in metrics
        assert -1.0 <= metrics[key] <= 1.0
    with open(single_test_metrics['out'], 'rb') as f:
        results = pickle.load(f)
    assert len(results) == NUM_VAL
    assert {r['img_id'] for r in results} == set(range(1, NUM_VAL + 1))
    assert 'bboxes' in results[0]['pred_instances']
    # --show-dir paints every val image under WORK_DIR/<time>/painted/
    painted = glob.glob(
        osp.join(single_test_metrics['work_dir'], '*', 'painted', '*.png'))
    assert len(painted) == NUM_VAL


def test_test_tool_rejects_missing_checkpoint(model_config, tmp_path, capsys,
                                              monkeypatch):
    # in-process with the tool's real error wrapper: it fails before any
    # work, so a subprocess would only add the import of torch and mmdet
    missing = tmp_path / 'nope.pth'
    err = tool_error('test.py', [
        osp.join(REPO_ROOT, model_config), missing, '--work-dir', tmp_path
    ], capsys, monkeypatch)
    assert f'checkpoint not found: {missing}' in err


def test_dist_train_on_cpu_uses_gloo(dist_train):
    work_dir = dist_train['work_dir']
    proc = dist_train['job'].result()
    log = run_logs(work_dir)[-1]
    assert "'gloo'" in log
    assert 'rank 0 of 2' in log
    assert 'Distributed training: True' in log
    # each process sees half the data per epoch
    per_rank = ITERS_PER_EPOCH // 2
    assert f'Epoch(train) [2][{per_rank}/{per_rank}]' in log
    ckpt = load_ckpt(osp.join(work_dir, 'epoch_2.pth'))
    assert ckpt['meta']['iter'] == 2 * per_rank
    assert 'coco/bbox_mAP' in log
    assert proc.returncode == 0


def test_dist_test_matches_single_process(single_test_metrics):
    work_dir = single_test_metrics['dist']['work_dir']
    single_test_metrics['dist']['job'].result()
    dist_metrics = eval_metrics(work_dir)
    single = single_test_metrics['metrics']
    coco_keys = sorted(k for k in single if k.startswith('coco/'))
    assert coco_keys and coco_keys == sorted(
        k for k in dist_metrics if k.startswith('coco/'))
    assert {k: dist_metrics[k] for k in coco_keys} == \
        {k: single[k] for k in coco_keys}
    assert "'gloo'" in run_logs(work_dir)[-1]
