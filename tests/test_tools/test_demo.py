"""`make demo`'s pipeline end to end on tiny data: every output is written."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_demo_writes_every_output(tmp_path):
    data, out = tmp_path / 'shapes', tmp_path / 'demo'
    subprocess.run([
        sys.executable, 'tools/misc/make_shapes_dataset.py', '--out',
        str(data), '--num-train', '8', '--num-val', '4', '--img-size', '64'
    ], check=True, cwd=ROOT)
    result = subprocess.run([
        sys.executable, 'tools/demo/run_demo.py', '--data', str(data),
        '--out', str(out), '--cfg-options', 'train_cfg.max_epochs=1',
        'train_cfg.val_interval=1', 'train_dataloader.batch_size=4'
    ], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    metrics = json.loads((out / 'metrics.json').read_text())
    assert 'coco/bbox_mAP' in metrics
    assert len(list((out / 'detections').rglob('*.png'))) == 4
    for figure in ('attention.png', 'convergence.png', 'detections.png'):
        assert (out / figure).stat().st_size > 10_000, figure
    for run in ('conditional_detr', 'detr'):
        assert (out / run / 'last_checkpoint').is_file()
    assert f'{out / "convergence.png"}' in result.stdout
