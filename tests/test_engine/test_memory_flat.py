"""Long runs stay healthy (issue 8): the resident memory of a training
process does not grow with the iterations (a users' complaint about
MMDetection's DETR family).

Trains the shapes demo config -- shrunk to the tiny model and 64 px images
of tests/helpers/reliability.py -- for a few hundred iterations in this
process and samples VmRSS after every iteration.
"""
import numpy as np
import torch
from helpers.reliability import build_runner, make_shapes, write_tiny_config
from mmengine.hooks import Hook

ITERS = 400
WARM_UP = 100
MAX_GROWTH_MB = 8.0  # over the 300 iterations after the warm-up


def rss_mb() -> float:
    try:
        import psutil
        return psutil.Process().memory_info().rss / 2**20
    except ImportError:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('VmRSS:'):
                    return int(line.split()[1]) / 1024
    raise RuntimeError('cannot read the resident set size')


class RSSHook(Hook):

    def __init__(self):
        self.samples = []

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        self.samples.append(rss_mb())


def test_rss_flat_over_a_few_hundred_iterations(tmp_path):
    root = make_shapes(tmp_path / 'shapes', num_train=16, num_val=1)
    config = write_tiny_config(
        tmp_path / 'cfg.py', root, max_iters=ITERS, interval=10**6,
        extra='default_hooks = dict(logger=dict(interval=50), checkpoint='
        'dict(by_epoch=False, interval=10**6, save_last=False))\n'
        'log_processor = dict(by_epoch=False, window_size=50)\n')
    runner = build_runner(config, tmp_path / 'wd')
    hook = RSSHook()
    runner.register_hook(hook)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        runner.train()
    finally:
        torch.set_num_threads(threads)

    rss = np.array(hook.samples)
    assert len(rss) == ITERS
    after = rss[WARM_UP:]
    growth = after[-20:].mean() - after[:20].mean()
    slope = np.polyfit(np.arange(len(after)), after, 1)[0]  # MB / iteration
    report = (f'RSS {after[0]:.1f} -> {after[-1]:.1f} MB over '
              f'{len(after)} iterations; slope {slope * 1000:.2f} KB/iter')
    assert growth < MAX_GROWTH_MB, report
    assert growth < 0.02 * after[0], report
    assert slope * 1000 < MAX_GROWTH_MB * 1024 / len(after), report
