"""Export options and errors on the small demo config (half-width ResNet-18,
fast to export): ``--raw --dynamic`` gives every layer's outputs for a batch
of any size, and a module torch.export cannot trace is named in the error.
"""
import json
import os.path as osp

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from mmdet_conddetr.deploy.cli import main as export_main
from mmdet_conddetr.deploy.export import ExportError, export_onnx
from mmdet_conddetr.deploy.loading import build_detector, load_config
from mmdet_conddetr.deploy.runtime import METADATA_KEY

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO = osp.join(ROOT, 'configs', 'conditional_detr', 'shapes_demo.py')


def test_raw_dynamic_export_equals_tensor_mode(tmp_path):
    torch.manual_seed(0)
    model = build_detector(load_config(DEMO))
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():  # nothing left at its init value
                tensor.add_(0.05 * torch.randn(tensor.shape))
    checkpoint = str(tmp_path / 'demo.pth')
    torch.save({'state_dict': model.state_dict()}, checkpoint)
    out = str(tmp_path / 'demo_raw.onnx')
    info = export_main([DEMO, checkpoint, '--out', out, '--raw', '--dynamic'])
    assert info['outputs'] == ['all_logits', 'all_boxes']
    session = ort.InferenceSession(out, providers=['CPUExecutionProvider'])
    meta = json.loads(
        session.get_modelmeta().custom_metadata_map[METADATA_KEY])
    assert meta['raw'] and meta['classes'] == [
        'circle', 'square', 'triangle', 'star'
    ]
    assert meta['preprocess']['resize'] == dict(rule='keep_ratio',
                                                scale=[64, 64],
                                                backend='cv2',
                                                interpolation='bilinear')
    model.eval()
    for batch, (height, width) in ((1, (64, 48)), (3, (40, 64))):
        images = torch.randn(batch, 3, height, width)
        with torch.no_grad():
            feats = model.extract_feat(images)
            sample = type('Sample', (), dict(batch_input_shape=(height, width),
                                             img_shape=(height, width)))
            head_inputs = model.forward_transformer(feats, [sample] * batch)
            logits, boxes = model.bbox_head(**head_inputs)
        all_logits, all_boxes = session.run(None, {'image': images.numpy()})
        layers = len(model.decoder.layers)
        assert all_logits.shape == (layers, batch, model.num_queries, 4)
        assert np.abs(all_logits - logits.numpy()).max() <= 1e-4
        assert np.abs(all_boxes - boxes.numpy()).max() <= 1e-4


class NumpyBackbone(nn.Module):
    """A backbone that leaves torch: its output depends on a value read
    back into Python, which torch.export cannot trace."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 512, 3, stride=32, padding=1)

    def forward(self, x):
        if float(x.mean()) > 0:  # data-dependent Python control flow
            x = -x
        return (self.conv(x), )


def test_untraceable_backbone_is_named(tmp_path):
    model = build_detector(load_config(DEMO))
    model.backbone = NumpyBackbone()
    model.neck = None
    with pytest.raises(ExportError) as info:
        export_onnx(model, str(tmp_path / 'x.onnx'), metadata={})
    message = str(info.value)
    assert "'backbone' (NumpyBackbone)" in message
    assert 'dynamic image size' in message
    assert not osp.exists(tmp_path / 'x.onnx')


def test_too_old_opset_and_unwritable_out_are_clear(tmp_path):
    model = build_detector(load_config(DEMO))
    with pytest.raises(ExportError, match='--opset 17.*18'):
        export_onnx(model, str(tmp_path / 'a.onnx'), metadata={}, opset=17)
    blocker = tmp_path / 'file'
    blocker.write_text('')
    with pytest.raises(ExportError, match='cannot write .*b.onnx'):
        export_onnx(model, str(blocker / 'b.onnx'), metadata={})
    assert sorted(p.name for p in tmp_path.iterdir()) == ['file']
