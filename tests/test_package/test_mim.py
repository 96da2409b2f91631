"""OpenMMLab's ``mim`` against a normal (wheel) install of this package.

The wheel is built from a copy of this checkout (so that no stale ``build/``
folder leaks into it) and installed into a temporary
``--target`` directory that is put first on ``PYTHONPATH``, so ``mim`` sees
it instead of the editable install of the test environment. Nothing is
downloaded: ``mim download``'s file fetcher is replaced by one that records
the URL it was given.
"""
import os
import os.path as osp
import shutil
import subprocess
import sys

import pytest
import yaml

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
MIM = osp.join(osp.dirname(sys.executable), 'mim')
# Build products, local data and environments: not part of a source tree.
UNPACKAGED = ('.git', '.venv', '.stamps', '.pytest_cache', '.mim', 'build',
              'dist', '*.egg-info', '__pycache__', 'data', 'work_dirs')


def _metafile_models():
    with open(osp.join(REPO, 'configs', 'conditional_detr',
                       'metafile.yml')) as f:
        return {model['Name']: model for model in yaml.safe_load(f)['Models']}


@pytest.fixture(scope='module')
def wheel_install(tmp_path_factory):
    """PYTHONPATH entry holding a normal install of this checkout."""
    root = tmp_path_factory.mktemp('wheel_install')
    project = root / 'project'
    shutil.copytree(REPO,
                    project,
                    ignore=shutil.ignore_patterns(*UNPACKAGED))
    pip = [sys.executable, '-m', 'pip', '--disable-pip-version-check', '-q']
    subprocess.run([
        *pip, 'wheel', '--no-deps', '--no-build-isolation',
        str(project), '-w',
        str(root / 'dist')
    ],
                   check=True,
                   timeout=300,
                   capture_output=True)
    wheels = list((root / 'dist').glob('mmdet_conddetr-*.whl'))
    assert len(wheels) == 1, wheels
    subprocess.run(
        [*pip, 'install', '--no-deps', '--target',
         str(root / 'site'),
         str(wheels[0])],
        check=True,
        timeout=300,
        capture_output=True)
    return str(root / 'site')


def _run(args, site, cwd):
    env = dict(os.environ, PYTHONPATH=site, PYTHONWARNINGS='ignore')
    proc = subprocess.run(args,
                          cwd=cwd,
                          env=env,
                          capture_output=True,
                          text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_mim_search_lists_every_metafile_model(wheel_install, tmp_path):
    stdout = _run([MIM, 'search', 'mmdet_conddetr'], wheel_install, tmp_path)
    models = _metafile_models()
    listed = {
        line.split(':', 1)[1].strip()
        for line in stdout.splitlines() if line.startswith('config id:')
    }
    assert listed == set(models)
    assert '41.0' in stdout  # the official R50's published box AP


DOWNLOAD = """
import importlib
import sys

# mim.commands re-exports the function ``download`` under the module's name.
download = importlib.import_module('mim.commands.download')

def record_url(url, path, **kwargs):
    with open(path, 'w') as f:
        f.write(url)

download.download_from_file = record_url
download.download('mmdet_conddetr', [sys.argv[1]], dest_root=sys.argv[2])
"""


def test_mim_download_writes_the_config_and_fetches_the_weights(
        wheel_install, tmp_path):
    name = 'r50_50ep'
    weights = _metafile_models()[name]['Weights']
    dest = tmp_path / 'checkpoints'
    _run([sys.executable, '-c', DOWNLOAD, name, str(dest)], wheel_install,
         tmp_path)
    assert (dest / weights.split('/')[-1]).read_text() == weights
    check = ("from mmengine import Config; import sys; "
             "cfg = Config.fromfile(sys.argv[1]); "
             "print(cfg.model.type, cfg.model.num_queries)")
    stdout = _run([sys.executable, '-c', check,
                   str(dest / f'{name}.py')], wheel_install, tmp_path)
    assert stdout.split() == ['ConditionalDETR', '300']


def test_package_scoped_config_path_from_the_wheel(wheel_install, tmp_path):
    script = ("import mmdet_conddetr; from mmengine.hub import get_config; "
              "cfg = get_config("
              "'mmdet_conddetr::conditional_detr/r50_50ep.py'); "
              "print(mmdet_conddetr.__file__); print(cfg.model.type)")
    stdout = _run([sys.executable, '-c', script], wheel_install, tmp_path)
    package_file, model_type = stdout.split()
    assert package_file.startswith(wheel_install)
    assert model_type == 'ConditionalDETR'


def test_mim_train_runs_the_config_with_its_safety_hooks(
        wheel_install, tmp_path):
    """``mim train mmdet_conddetr CONFIG`` runs the wheel's tools/train.py:
    the same hooks as every other entry point, atomic checkpoints."""
    from helpers.reliability import make_shapes, write_tiny_config
    config = write_tiny_config(tmp_path / 'cfg.py',
                               make_shapes(tmp_path / 'shapes'),
                               max_iters=2,
                               interval=2)
    work_dir = tmp_path / 'work'
    stdout = _run([
        MIM, 'train', 'mmdet_conddetr', config, '--work-dir',
        str(work_dir)
    ], wheel_install, tmp_path)
    assert (work_dir / 'iter_2.pth').is_file()
    assert not list(work_dir.glob('*.tmp*'))
    for hook in ('AtomicCheckpointHook', 'NonFiniteLossHook',
                 'CheckpointMatchHook'):
        assert hook in stdout
