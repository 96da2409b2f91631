"""The COCO configs' test pipeline + data preprocessor give the official
evaluation input (``make_coco_transforms('val')``) on real photos, and
predictions map back to the original image exactly.

The reference is ``tests/helpers/official_transforms.py`` (PIL load +
convert RGB, the official size rule, PIL bilinear, /255, ImageNet
normalisation). The "before" checks pin what MMDetection's own pipeline
(kept in the configs as ``mmdet_test_pipeline``) does differently.
"""
import functools

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import Compose
from mmengine.registry import DefaultScope

import mmdet_conddetr  # noqa: F401
from builders import CONFIG_DIR
from helpers import official_transforms as official
from helpers.photos import write_photos
from mmdet_conddetr.registry import MODELS

# R50 and DC5 differ in the evaluation batch (2 and 1 per GPU)
CONFIGS = ['r50_50ep.py', 'dc5_r50_50ep.py']
ALL_PHOTOS = ['640x480', '640x427', '500x375', '612x612', '480x640', 'exif6',
              'gray']


@pytest.fixture(scope='module')
def photos(tmp_path_factory):
    return write_photos(str(tmp_path_factory.mktemp('photos')))


@functools.lru_cache(maxsize=None)
def _build(name, pipeline_key='test'):
    cfg = Config.fromfile(f'{CONFIG_DIR}/{name}')
    pipeline_cfg = (cfg.test_dataloader.dataset.pipeline
                    if pipeline_key == 'test' else cfg.mmdet_test_pipeline)
    with DefaultScope.overwrite_default_scope('mmdet_conddetr'):
        pipeline = Compose(pipeline_cfg)
        preprocessor = MODELS.build(cfg.model.data_preprocessor)
    return cfg, pipeline, preprocessor


def _inputs(pipeline, preprocessor, paths):
    """Batched inputs [B, 3, H, W] and data samples of image files."""
    packed = [
        pipeline(dict(img_path=path, img_id=i, instances=[]))
        for i, path in enumerate(paths)
    ]
    batch = preprocessor(
        dict(
            inputs=[p['inputs'] for p in packed],
            data_samples=[p['data_samples'] for p in packed]), False)
    return batch['inputs'], batch['data_samples']


@pytest.mark.parametrize('name', CONFIGS)
def test_eval_input_equals_official(name, photos):
    cfg, pipeline, preprocessor = _build(name)
    for key in ALL_PHOTOS:
        path = photos[key]
        [inputs], [sample] = _inputs(pipeline, preprocessor, [path])
        expected = official.eval_input(path)
        assert inputs.shape == expected.shape, key
        assert (inputs - expected).abs().max() <= 1e-5, key
        width, height = official.load(path).size
        assert sample.ori_shape == (height, width), key
        assert sample.img_shape == tuple(expected.shape[1:]), key
    # a batch of the configured evaluation size pads as the official
    # nested_tensor_from_tensor_list: zeros right and bottom
    batch_size = cfg.test_dataloader.batch_size
    paths = [photos['640x480'], photos['480x640']][:batch_size]
    inputs, _ = _inputs(pipeline, preprocessor, paths)
    for image, path in zip(inputs, paths):
        expected = official.eval_input(path)
        height, width = expected.shape[1:]
        assert (image[:, :height, :width] - expected).abs().max() <= 1e-5
        assert not image[:, height:].any() and not image[:, :, width:].any()


def test_exif_orientation_is_ignored_as_officially(photos):
    _, pipeline, _ = _build('r50_50ep.py')
    sample = pipeline(dict(img_path=photos['exif6'], img_id=0,
                           instances=[]))['data_samples']
    # stored 640x480; mmcv's default 'color' flag would rotate it
    assert sample.ori_shape == (480, 640)
    assert sample.img_shape == (800, 1066)


def test_mmdets_own_pipeline_differs(photos):
    """What the configs fixed (mmdet's Resize + cv2, EXIF rotation)."""
    _, pipeline, preprocessor = _build('r50_50ep.py', 'mmdet')
    [inputs], [sample] = _inputs(pipeline, preprocessor, [photos['640x480']])
    assert sample.img_shape == (800, 1067)  # official: 800x1066
    assert official.mmcv_rescale_size(640, 480) == (1067, 800)
    assert official.output_size(640, 480, 800, 1333) == (1066, 800)
    [inputs], _ = _inputs(pipeline, preprocessor, [photos['612x612']])
    expected = official.eval_input(photos['612x612'])
    assert inputs.shape == expected.shape  # same size, other interpolation
    grey_level = 1 / 255 / min(official.STD)
    assert 1e-3 < (inputs - expected).abs().max() <= 1.01 * grey_level
    _, [sample] = _inputs(pipeline, preprocessor, [photos['exif6']])
    assert sample.ori_shape == (640, 480)  # rotated by the EXIF tag


@pytest.mark.parametrize('name', CONFIGS)
def test_predictions_map_back_to_the_original_corners(name, photos):
    cfg, pipeline, preprocessor = _build(name)
    with DefaultScope.overwrite_default_scope('mmdet_conddetr'):
        head = MODELS.build(cfg.model.bbox_head)
    head.init_weights()
    # every query predicts the whole image: cxcywh (0.5, 0.5, 1, 1) exactly
    with torch.no_grad():
        head.fc_reg.layers[-1].bias.copy_(torch.tensor([0., 0., 30., 30.]))
    keys = ['640x480', '500x375', '480x640', 'exif6']
    _, samples = _inputs(pipeline, preprocessor, [photos[k] for k in keys])
    hidden = torch.zeros(1, len(keys), 3, cfg.model.bbox_head.embed_dims)
    references = torch.full((len(keys), 3, 2), 0.5)
    results = head.predict(hidden, references, samples, rescale=True)
    for key, result, sample in zip(keys, results, samples):
        width, height = official.load(photos[key]).size
        corners = torch.tensor([0., 0., width, height])
        assert torch.equal(result.bboxes, corners.expand_as(result.bboxes))
        # mmdet's way back (resized corners / scale_factor) lands there too
        img_h, img_w = sample.img_shape
        back = np.array([img_w, img_h]) / np.array(sample.scale_factor)
        np.testing.assert_allclose(back, [width, height], rtol=0, atol=1e-9)
