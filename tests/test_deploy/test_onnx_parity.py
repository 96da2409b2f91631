"""ONNX Runtime gives what PyTorch gives: the R50 and DC5 configs, exported
with random perturbed weights, at two image sizes each (neither the size the
export traced with: height and width are really dynamic).

Tolerances: scores 1e-4, boxes 1e-4 of the image size (the model predicts
boxes normalised to the image; in pixels that is 1e-4 x the side), the
same 100 detections with the same labels (up to near-ties at the cut, see
the test), in the same order where the order is defined.
"""
import numpy as np
import onnxruntime as ort
import pytest
import torch
from mmdet.structures import DetDataSample

from mmdet_conddetr.benchmark.outputs import match_detections
from mmdet_conddetr.deploy.loading import load_detector
from mmdet_conddetr.deploy.runtime import METADATA_KEY

SIZES = [(128, 160), (192, 128)]  # (h, w); the export traced 224 x 288


def _batch(model, height, width, seed):
    generator = torch.Generator().manual_seed(seed)
    image = torch.randint(0,
                          256, (3, height, width),
                          generator=generator,
                          dtype=torch.uint8)
    sample = DetDataSample(metainfo=dict(img_shape=(height, width),
                                         ori_shape=(height, width),
                                         scale_factor=(1.0, 1.0)))
    return model.data_preprocessor(
        dict(inputs=[image], data_samples=[sample]), False)


def _session(path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    return ort.InferenceSession(path,
                                options,
                                providers=['CPUExecutionProvider'])


@pytest.mark.parametrize('name', ['r50', 'dc5'])
def test_onnx_runtime_equals_pytorch_at_two_sizes(exported, name):
    export = exported(name)
    model, _ = load_detector(export['config'], export['checkpoint'],
                             export['cfg_options'])
    session = _session(export['onnx'])
    assert [i.name for i in session.get_inputs()] == ['image']
    assert [o.name for o in session.get_outputs()] == [
        'scores', 'labels', 'boxes'
    ]
    model.bbox_head.test_cfg['max_per_img'] = 120
    for seed, (height, width) in enumerate(SIZES):
        data = _batch(model, height, width, seed)
        with torch.no_grad():
            pred = model(data['inputs'], data['data_samples'],
                         mode='predict')[0].pred_instances
        scores, labels, boxes = session.run(
            None, {'image': data['inputs'].numpy()})
        assert scores.shape == (1, 100) and boxes.shape == (1, 100, 4)
        # The same 100 detections: each of ONNX Runtime's matches one of
        # PyTorch's (same label, score and box to 1e-4, box normalised by
        # the image size), and the sorted scores agree. PyTorch's list is
        # longer than 100: random weights leave scores around the 100th
        # within 1e-8 of each other, below float32 rounding, so which of
        # them make the cut is not defined.
        matched, score_error, box_error = match_detections(
            (torch.from_numpy(scores[0]), torch.from_numpy(labels[0]),
             torch.from_numpy(boxes[0])),
            (pred.scores, pred.labels, pred.bboxes), (height, width), 1e-4)
        assert matched == 100, (name, height, width, matched)
        assert score_error <= 1e-4 and box_error <= 1e-4
        assert np.abs(scores[0] - pred.scores[:100].numpy()).max() <= 1e-6
        # And rank by rank where the rank is defined (neighbours more than
        # 1e-6 apart; float rounding moves scores by ~1e-7).
        pred = pred[:100]
        gap = np.abs(np.diff(pred.scores.numpy()))
        clear = np.minimum(np.r_[np.inf, gap], np.r_[gap, np.inf]) > 1e-6
        assert clear.sum() >= 10
        np.testing.assert_array_equal(labels[0][clear],
                                      pred.labels.numpy()[clear])
        scale = np.array([width, height, width, height], dtype=np.float32)
        ranked = np.abs(boxes[0] - pred.bboxes.numpy())[clear] / scale
        assert ranked.max() <= 1e-4
        # Not a degenerate output: boxes differ between detections.
        assert np.ptp(boxes[0], axis=0).min() > 1.0


def test_export_info_and_metadata(exported):
    export = exported('r50')
    info = export['info']
    assert info['bytes'] > 50e6  # the ResNet-50 weights are inside the file
    assert info['outputs'] == ['scores', 'labels', 'boxes']
    session = ort.InferenceSession(export['onnx'],
                                   providers=['CPUExecutionProvider'])
    import json

    import mmdet_conddetr
    meta = json.loads(
        session.get_modelmeta().custom_metadata_map[METADATA_KEY])
    assert meta['package_version'] == mmdet_conddetr.__version__
    assert len(meta['classes']) == 80 and meta['classes'][0] == 'person'
    pre = meta['preprocess']
    assert pre['resize'] == dict(rule='detr',
                                 size=800,
                                 max_size=1333,
                                 interpolation='PIL.BILINEAR')
    assert pre['mean'] == [123.675, 116.28, 103.53]
    assert pre['std'] == [58.395, 57.12, 57.375]
    assert pre['channel_order'] == 'RGB'
    assert pre['decode'] == dict(backend='pillow', exif_orientation=False)
    assert meta['opset'] == info['opset'] and not meta['raw']
