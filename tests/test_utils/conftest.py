"""Fixtures shared by the safe-load tests: one toy mmengine training run
(:mod:`helpers.toy_runner`) whose checkpoints they load."""
import pytest


@pytest.fixture(scope='package')
def trained(tmp_path_factory):
    """Train two epochs; return the work dir (epoch_1.pth, epoch_2.pth)."""
    from mmengine.runner import Runner

    from helpers.toy_runner import runner_cfg
    work_dir = tmp_path_factory.mktemp('safe_load_run')
    runner = Runner(**runner_cfg(work_dir, 'safe_load_train'))
    runner.train()
    assert (work_dir / 'epoch_1.pth').is_file()
    assert (work_dir / 'epoch_2.pth').is_file()
    return work_dir
