"""tools/check_env.py reports versions and the fix of each known problem."""
import importlib.util
import subprocess
import sys
from pathlib import Path

TOOL = Path(__file__).resolve().parents[2] / 'tools' / 'check_env.py'


def load_tool():
    spec = importlib.util.spec_from_file_location('check_env', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_this_environment_is_healthy():
    result = subprocess.run([sys.executable, str(TOOL)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ('torch', 'mmcv', 'mmengine', 'mmdet', 'mmdet_conddetr',
                 'CUDA available'):
        assert name in result.stdout
    assert 'No known incompatibility' in result.stdout


def test_known_incompatibilities_come_with_their_fix():
    tool = load_tool()
    [too_new] = tool.mmcv_problems('2.2.0')
    assert 'outside mmdet 3.3' in too_new and 'mmcv==2.1.0' in too_new
    [missing] = tool.mmcv_problems(None)
    assert 'not installed' in missing and 'mim install' in missing
    assert tool.mmcv_problems('2.1.0') == []
    assert tool.torch_load_problems('2.13.0') == []
