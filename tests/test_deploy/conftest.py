"""Shared exports for the deployment tests: each config is exported once per
session (an R50 export takes tens of seconds), with random, perturbed
weights saved as a checkpoint so the export tool loads them as a user's.

The transformer is cut to 2 encoder and 2 decoder layers to keep the export
short: the first decoder layer differs from the others (it adds the query
position to the content query), so every kind of layer is still exported;
the backbones (ResNet-50, ResNet-50-DC5) are the configs' own.

An export is mostly single-threaded tracing: when the first one is asked
for, the other configs are exported meanwhile by the same command line in
subprocesses (tools/deployment/export_onnx.py), on the other core.
"""
import json
import os
import os.path as osp
import subprocess
import sys
from typing import Dict

import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG_DIR = osp.join(ROOT, 'configs', 'conditional_detr')
CONFIGS = {
    'r50': osp.join(CONFIG_DIR, 'r50_50ep.py'),
    'dc5': osp.join(CONFIG_DIR, 'dc5_r50_50ep.py'),
}
SHORT_TRANSFORMER = ['model.encoder.num_layers=2', 'model.decoder.num_layers=2']


def perturb_(model: torch.nn.Module, seed: int = 0) -> None:
    """Random changes to every floating tensor of the state dict, so that no
    weight keeps its (often zero or constant) initial value: additive noise
    scaled to each tensor's spread, BN variances scaled by 0.5..1.5."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if not tensor.is_floating_point():
                continue
            noise = torch.randn(tensor.shape, generator=generator)
            if name.endswith('running_var'):
                tensor.mul_(0.5 + torch.rand(tensor.shape,
                                             generator=generator))
                continue
            spread = float(tensor.std()) if tensor.numel() > 1 else 0.0
            tensor.add_(noise * max(spread, 0.02) * 0.5)


def options_dict(options):
    """``--cfg-options`` strings as the dict mmengine merges."""
    return {k: int(v) for k, v in (o.split('=') for o in options)}


@pytest.fixture(scope='session')
def exported(tmp_path_factory):
    """``exported(name)`` -> dict(config, checkpoint, onnx, info,
    cfg_options)
    of the ``name`` config ('r50' or 'dc5'), exported once per session by
    the command line of tools/deployment/export_onnx.py."""
    from mmdet_conddetr.deploy.cli import main as export_main
    from mmdet_conddetr.deploy.loading import build_detector, load_config
    cache: Dict[str, dict] = {}
    running: Dict[str, tuple] = {}

    def prepare(name: str) -> dict:
        """A random, perturbed checkpoint of ``name`` and the export's
        command line arguments."""
        folder = tmp_path_factory.mktemp(f'onnx_{name}')
        cfg = load_config(CONFIGS[name], options_dict(SHORT_TRANSFORMER))
        torch.manual_seed(0)
        model = build_detector(cfg)
        perturb_(model, seed=1)
        checkpoint = str(folder / 'random.pth')
        torch.save({'state_dict': model.state_dict(), 'meta': {}}, checkpoint)
        out = str(folder / f'{name}.onnx')
        return dict(config=CONFIGS[name],
                    checkpoint=checkpoint,
                    onnx=out,
                    cfg_options=options_dict(SHORT_TRANSFORMER),
                    argv=[CONFIGS[name], checkpoint, '--out', out,
                          '--cfg-options', *SHORT_TRANSFORMER],
                    folder=folder)

    def start(name: str) -> None:
        export = prepare(name)
        logs = [open(export['folder'] / f'export.{kind}', 'w+')
                for kind in ('out', 'err')]
        proc = subprocess.Popen(
            [sys.executable,
             osp.join(ROOT, 'tools', 'deployment', 'export_onnx.py'),
             *export['argv']],
            stdout=logs[0], stderr=logs[1], cwd=ROOT,
            env=dict(os.environ, OMP_NUM_THREADS='1'))
        running[name] = (export, proc, logs)

    def finish(name: str) -> dict:
        export, proc, (out, err) = running.pop(name)
        proc.wait(timeout=1200)
        out.seek(0)
        err.seek(0)
        lines, errors = out.read().splitlines(), err.read()
        out.close()
        err.close()
        assert proc.returncode == 0 and lines, errors[-3000:]
        export['info'] = json.loads(lines[-1])  # the CLI prints its info
        return export

    def get(name: str) -> dict:
        if name in cache:
            return cache[name]
        if not cache and not running:
            for other in CONFIGS:
                if other != name:
                    start(other)
        if name in running:
            export = finish(name)
        else:
            export = prepare(name)
            export['info'] = export_main(export['argv'])
        for key in ('argv', 'folder'):
            del export[key]
        cache[name] = export
        return export

    yield get
    for _, proc, logs in running.values():  # asked for by no test
        proc.kill()
        proc.wait()
        for log in logs:
            log.close()
