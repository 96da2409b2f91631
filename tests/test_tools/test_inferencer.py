"""mmdet's ``DetInferencer`` and ``init_detector`` run our configs.

The configs build their model in the ``mmdet_conddetr`` scope (``_scope_`` in
the model dict), so mmdet's inferencer works with its default scope
(``'mmdet'``) as well as with ``scope='mmdet_conddetr'``, and loads native
or official-format checkpoints (converted while loading).
"""
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from mmdet.apis import DetInferencer, inference_detector, init_detector
from mmengine.config import Config
from mmengine.registry import init_default_scope

from mmdet_conddetr.checkpoint import export_state_dict
from mmdet_conddetr.models import ConditionalDETR

ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
SHAPES = osp.join(ROOT, 'configs', 'conditional_detr', 'shapes_demo.py')
R50 = osp.join(ROOT, 'configs', 'conditional_detr', 'r50_50ep.py')


def _random_checkpoint(config, path, seed=0):
    """Save a randomly initialised model of ``config`` as a checkpoint.

    The classification bias is raised so that every query scores well above
    the inferencer's drawing threshold on a random image.
    """
    cfg = Config.fromfile(config)
    cfg.model.backbone.init_cfg = None  # no download
    init_default_scope('mmdet_conddetr')
    from mmdet_conddetr.registry import MODELS
    torch.manual_seed(seed)
    model = MODELS.build(cfg.model)
    model.init_weights()
    with torch.no_grad():
        model.bbox_head.fc_cls.bias.fill_(2.0)
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
    return model


@pytest.fixture(scope='module')
def image():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)


@pytest.fixture(scope='module')
def shapes_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp('ckpt') / 'shapes.pth'
    _random_checkpoint(SHAPES, path)
    return str(path)


def _predictions(result):
    pred = result['predictions'][0]
    return (np.asarray(pred['scores']), np.asarray(pred['labels']),
            np.asarray(pred['bboxes']))


@pytest.mark.parametrize('scope', [None, 'mmdet_conddetr'])
def test_det_inferencer_matches_init_detector(shapes_checkpoint, image,
                                              scope):
    kwargs = {} if scope is None else {'scope': scope}
    inferencer = DetInferencer(
        model=SHAPES, weights=shapes_checkpoint, device='cpu',
        show_progress=False, **kwargs)
    assert type(inferencer.model) is ConditionalDETR
    scores, labels, boxes = _predictions(inferencer(image.copy()))

    detector = init_detector(SHAPES, shapes_checkpoint, device='cpu')
    reference = inference_detector(detector, image.copy()).pred_instances
    assert len(scores) == len(reference.scores) > 0
    np.testing.assert_allclose(scores, reference.scores.numpy(), atol=1e-5)
    np.testing.assert_array_equal(labels, reference.labels.numpy())
    np.testing.assert_allclose(boxes, reference.bboxes.numpy(), atol=1e-3)


def test_det_inferencer_with_the_coco_config(tmp_path, image):
    """The issue's own call, with our checkpoint and with the same weights
    in the official repo's format (converted while loading)."""
    native = tmp_path / 'r50.pth'
    _random_checkpoint(R50, native)
    official = tmp_path / 'checkpoint.pth'
    state_dict = torch.load(native, weights_only=True)['state_dict']
    torch.save({'model': export_state_dict(state_dict, to='official')},
               official)

    # a file, not an array: mmdet 3.3 cannot name saved predictions of arrays
    image_file = str(tmp_path / 'image.png')
    cv2.imwrite(image_file, image)
    results = []
    for weights in (native, official):
        inferencer = DetInferencer(
            model=R50, weights=str(weights), device='cpu',
            show_progress=False)
        out_dir = tmp_path / weights.stem
        results.append(
            _predictions(
                inferencer(image_file, out_dir=str(out_dir),
                           pred_score_thr=0.5, no_save_pred=False)))
        assert len(list((out_dir / 'vis').glob('*.png'))) == 1
        assert len(list((out_dir / 'preds').glob('*.json'))) == 1

    scores, labels, boxes = results[0]
    assert len(scores) == 100 and boxes.shape == (100, 4)
    assert labels.max() < 80
    for native_out, official_out in zip(*results):
        np.testing.assert_allclose(native_out, official_out, atol=1e-4)
