"""tools/deployment/onnx_inference.py: the same detections as mmdet's
``DetInferencer`` on a real photo, with ONNX Runtime, numpy and PIL only.

The photo is matplotlib's sample ``grace_hopper.jpg`` (512 x 600), re-saved
with an EXIF orientation tag (rotate 90) that both sides must ignore, as
the official loader does. The checkpoint is the R50 export's (random,
perturbed weights); the test pipeline resizes it to 800 x 937 with the
official rule.
"""
import json
import os.path as osp
import subprocess
import sys

import pytest
import torch
from matplotlib import cbook
from PIL import Image

from mmdet_conddetr.benchmark.outputs import match_detections
from mmdet_conddetr.deploy.runtime import get_size_with_aspect_ratio

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = osp.join(ROOT, 'tools', 'deployment', 'onnx_inference.py')
HEAVY = ('torch', 'mmcv', 'mmdet', 'mmengine', 'mmdet_conddetr')

# Runs the tool in a fresh interpreter, then lists the heavy packages that
# got imported (none may be).
RUN_TOOL = """
import json, runpy, sys
sys.argv = {argv!r}
runpy.run_path({tool!r}, run_name='__main__')
heavy = sorted({{m.split('.')[0] for m in sys.modules}} & set({heavy!r}))
print('IMPORTED ' + json.dumps(heavy))
"""


@pytest.fixture(scope='module')
def photo(tmp_path_factory):
    path = tmp_path_factory.mktemp('photo') / 'grace_hopper_exif6.jpg'
    with Image.open(cbook.get_sample_data('grace_hopper.jpg')) as image:
        exif = Image.Exif()
        exif[0x0112] = 6  # orientation: rotate 90 CW on display
        image.convert('RGB').save(path, quality=95, exif=exif)
    return str(path)


def test_official_size_rule():
    # short side 800, long side truncated (mmcv would round 1066.67 up)
    assert get_size_with_aspect_ratio(640, 480, 800, 1333) == (1066, 800)
    assert get_size_with_aspect_ratio(480, 640, 800, 1333) == (800, 1066)
    assert get_size_with_aspect_ratio(512, 600, 800, 1333) == (800, 937)
    # capped: short side round(1333 * 500 / 2000) = 333, long side 1332
    assert get_size_with_aspect_ratio(2000, 500, 800, 1333) == (1332, 333)
    # already at size: unchanged
    assert get_size_with_aspect_ratio(1333, 800, 800, 1333) == (1333, 800)
    assert get_size_with_aspect_ratio(300, 200, 800, None) == (1200, 800)


def test_onnx_inference_equals_det_inferencer(exported, photo, tmp_path):
    export = exported('r50')
    out_dir = tmp_path / 'out'
    # the tool runs on one core while DetInferencer runs here on the other
    argv = [TOOL, export['onnx'], photo, '--out-dir', str(out_dir),
            '--threads', '1']
    proc = subprocess.Popen(
        [sys.executable, '-c',
         RUN_TOOL.format(argv=argv, tool=TOOL, heavy=HEAVY)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        cwd=str(tmp_path))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        pred, names = _det_inferencer_prediction(export, photo)
        stdout, stderr = proc.communicate(timeout=600)
    finally:
        torch.set_num_threads(threads)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr[-3000:]
    imported = [line for line in stdout.splitlines()
                if line.startswith('IMPORTED ')]
    assert imported and json.loads(imported[-1][9:]) == [], stdout
    record = json.loads((out_dir / 'grace_hopper_exif6.json').read_text())
    drawn = Image.open(out_dir / 'grace_hopper_exif6.jpg')
    assert drawn.size == (512, 600)  # original frame, EXIF tag ignored

    ours = [torch.tensor(record[k]) for k in ('scores', 'labels', 'boxes')]
    theirs = [torch.tensor(pred[k]) for k in ('scores', 'labels', 'bboxes')]
    assert len(ours[0]) == 100 and len(theirs[0]) == 120
    matched, score_error, box_error = match_detections(
        ours, theirs, (600, 512), 1e-4)
    assert matched == 100, (matched, score_error, box_error)
    assert (ours[0] - theirs[0][:100]).abs().max() <= 1e-6
    assert record['label_names'] == [names[i] for i in record['labels']]


def _det_inferencer_prediction(export, photo):
    """mmdet's DetInferencer on the export's config and checkpoint: its
    prediction dict and the class names."""
    from mmdet.apis import DetInferencer
    from mmengine.config import Config
    cfg = Config.fromfile(export['config'])
    cfg.merge_from_dict(export['cfg_options'])
    cfg.model.backbone.init_cfg = None
    # A longer list to match against: random weights leave near-tied
    # scores (1e-8 apart) at the 100th place, see test_onnx_parity.py.
    cfg.model.test_cfg.max_per_img = 120
    inferencer = DetInferencer(model=cfg, weights=export['checkpoint'],
                               device='cpu', show_progress=False)
    pred = inferencer(photo)['predictions'][0]
    return pred, inferencer.model.dataset_meta['classes']


def test_missing_model_and_unreadable_image_are_named(exported, tmp_path):
    not_an_image = tmp_path / 'notes.jpg'
    not_an_image.write_text('not a picture')
    cases = [
        ([str(tmp_path / 'missing.onnx'), str(not_an_image)], 'missing.onnx'),
        ([exported('r50')['onnx'], str(not_an_image)], 'notes.jpg'),
        ([exported('r50')['onnx'], str(tmp_path / 'gone.png')], 'gone.png'),
    ]
    for args, named in cases:
        proc = subprocess.run(
            [sys.executable, TOOL, *args, '--out-dir', str(tmp_path / 'o')],
            capture_output=True, text=True, timeout=300)
        assert proc.returncode != 0
        assert named in proc.stderr and 'Traceback' not in proc.stderr, (
            proc.stderr)


def test_keep_ratio_rule_follows_mmcv():
    """The demo configs' resize (mmcv Resize, keep_ratio, cv2 bilinear):
    mmcv's output size, and OpenCV's pixels to one grey level (OpenCV
    rounds its interpolation weights to 11 bits)."""
    import cv2
    import mmcv
    import numpy as np

    from mmdet_conddetr.deploy.runtime import (_bilinear_no_antialias,
                                               keep_ratio_size)
    for width, height in ((128, 128), (128, 96), (50, 130), (333, 77)):
        expected = mmcv.rescale_size((width, height), (64, 64))
        assert keep_ratio_size(width, height, (64, 64)) == tuple(expected)
    image = np.random.default_rng(0).integers(0, 256, (90, 120, 3),
                                              dtype=np.uint8)
    for size in ((64, 48), (200, 150), (120, 45)):
        ours = _bilinear_no_antialias(image, *size).astype(int)
        reference = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
        assert np.abs(ours - reference.astype(int)).max() <= 1, size
