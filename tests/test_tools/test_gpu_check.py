"""tools/analysis_tools/gpu_check.py: a clear stop without CUDA; its AMP
training steps run (here through the CPU's bfloat16 wrapper)."""
import importlib.util
import json
import os
import os.path as osp
import subprocess
import sys

import torch

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SCRIPT = osp.join(ROOT, 'tools', 'analysis_tools', 'gpu_check.py')


def load_script():
    spec = importlib.util.spec_from_file_location('gpu_check', SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_exits_non_zero_with_a_clear_message_without_cuda(tmp_path):
    assert not torch.cuda.is_available()
    out = tmp_path / 'gpu_check.json'
    env = dict(os.environ, PYTHONPATH=ROOT)
    done = subprocess.run([sys.executable, SCRIPT, '--out', str(out)],
                          capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=300)
    assert done.returncode == 2
    assert 'CUDA is not available' in done.stderr
    assert torch.__version__ in done.stderr
    assert not out.exists()


def test_amp_steps_run_and_report_each_step():
    gpu_check = load_script()
    # The small demo model: the same code path as R50, in a few seconds.
    config = osp.join(ROOT, 'configs', 'conditional_detr', 'shapes_demo.py')
    result = gpu_check.amp_stability(config, 'cpu', steps=2, calibration=0,
                                     sizes=((96, 128), (64, 96)))
    assert result['optim_wrapper'] == 'CPUAmpOptimWrapper'
    assert result['dtype'] == 'torch.bfloat16'
    assert [step['finite'] for step in result['steps']] == [True, True]
    assert all(step['skipped'] is False for step in result['steps'])
    assert result['passed'] is True
    losses = [step['loss'] for step in result['steps']]
    assert all(loss > 0 for loss in losses) and losses[0] != losses[1]


def test_extra_arguments_go_to_the_benchmark():
    gpu_check = load_script()
    args, extra = gpu_check.parse_args(
        ['--out', 'x.json', '--', '--quick', '--repeats', '2'])
    assert args.out == 'x.json' and extra == ['--quick', '--repeats', '2']


def test_benchmark_is_run_through_its_cli(monkeypatch):
    """The command is the benchmark script with flags its parser accepts;
    the JSON it writes is read back."""
    from mmdet_conddetr.benchmark.cli import parse_args
    gpu_check = load_script()
    seen = {}

    def fake_call(command):
        assert command[1] == osp.join(ROOT, 'tools', 'analysis_tools',
                                      'benchmark.py')
        seen['args'] = parse_args(command[2:])
        with open(seen['args'].out, 'w') as f:
            json.dump(dict(table='ours vs mmdet'), f)
        return 0

    monkeypatch.setattr(gpu_check.subprocess, 'call', fake_call)
    result = gpu_check.run_benchmark(['--quick'])
    args = seen['args']
    assert args.device == 'cuda' and args.amp and args.quick
    assert result['returncode'] == 0
    assert result['result'] == dict(table='ours vs mmdet')
