"""Hugging Face transformers' and MMDetection's ConditionalDETR converted
to ours give the same outputs (both run here)."""
from collections import OrderedDict

import pytest
import torch
from mmengine.registry import DefaultScope

from builders import make_batch
from helpers.hf_reference import build_hf_model

import mmdet_conddetr  # noqa: F401
from helpers.checkpoint_layouts import (  # noqa: F401 (fixtures)
    assert_same, ours_model, remove_files)
from mmdet_conddetr.checkpoint import (COCO_CATEGORY_IDS, convert,
                                       convert_state_dict, export_state_dict,
                                       load_foreign_checkpoint)

TOL = 1e-4


def _perturb_(model, seed):
    """Give ``model`` weights under which a misplaced tensor changes the
    outputs: random BN statistics/affine, LayerNorm affine, biases, and
    Xavier-uniform linear weights (gain 3, so attention is not uniform).
    Convolution weights keep the library's random init."""
    generator = torch.Generator().manual_seed(seed)

    def uniform_(tensor, low, high):
        tensor.copy_(torch.rand(tensor.shape, generator=generator) *
                     (high - low) + low)

    def normal_(tensor, std, mean=0.0):
        tensor.copy_(torch.randn(tensor.shape, generator=generator) * std +
                     mean)

    with torch.no_grad():
        for module in model.modules():
            if hasattr(module, 'running_var') and module.running_var \
                    is not None:
                uniform_(module.weight, 0.5, 1.0)
                normal_(module.bias, 0.02)
                normal_(module.running_mean, 0.02)
                uniform_(module.running_var, 0.5, 1.5)
            elif isinstance(module, torch.nn.LayerNorm):
                normal_(module.weight, 0.1, mean=1.0)
                normal_(module.bias, 0.05)
            elif isinstance(module, torch.nn.Embedding):
                normal_(module.weight, 1.0)
            elif isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
                if isinstance(module, torch.nn.Linear):
                    bound = 3 * (6 / sum(module.weight.shape))**0.5
                    uniform_(module.weight, -bound, bound)
                if module.bias is not None:
                    normal_(module.bias, 0.02)
            elif isinstance(module, torch.nn.MultiheadAttention):
                bound = 3 * (6 / sum(module.in_proj_weight.shape))**0.5
                uniform_(module.in_proj_weight, -bound, bound)
                normal_(module.in_proj_bias, 0.02)
    return model


def _tensor_outputs(model, batch):
    with torch.no_grad():
        return model(batch['inputs'], batch['data_samples'], mode='tensor')


@pytest.fixture(scope='module')
def hf_model():
    return _perturb_(build_hf_model(depth=50), seed=1)


def test_hf_outputs_match(hf_model, ours_model, tmp_path):
    """transformers' model and ours give the same detections (eval, same
    normalised input, padded batch with pixel_mask)."""
    state = hf_model.state_dict()  # transformers 5 in-memory names
    result = convert(state)
    assert result.source == 'hf' and result.source_num_classes == 91
    ours_model.load_state_dict(result.state_dict, strict=True)
    batch = make_batch(ours_model, [(64, 96), (48, 80)], seed=3)
    logits, boxes = _tensor_outputs(ours_model, batch)
    inputs = batch['inputs']
    pixel_mask = torch.zeros(inputs.shape[0], *inputs.shape[-2:],
                             dtype=torch.long)
    for index, sample in enumerate(batch['data_samples']):
        height, width = sample.img_shape
        pixel_mask[index, :height, :width] = 1
    with torch.no_grad():
        out = hf_model(pixel_values=inputs, pixel_mask=pixel_mask)
    ids = list(COCO_CATEGORY_IDS)
    assert (logits[-1] - out.logits[..., ids]).abs().max() < TOL
    assert (boxes[-1] - out.pred_boxes).abs().max() < TOL
    assert logits[-1].std() > 0.1  # not a degenerate comparison

    # The files transformers writes (the hub spelling) convert the same.
    hf_model.save_pretrained(tmp_path)
    from_file = load_foreign_checkpoint(str(tmp_path / 'model.safetensors'))
    assert from_file.source == 'hf'
    assert_same(from_file.state_dict, result.state_dict)

    # The published hub model has a timm ResNet: torchvision names under
    # model.backbone.conv_encoder.model. (mmdet's ResNet uses them too).
    from safetensors.torch import load_file
    hub = load_file(str(tmp_path / 'model.safetensors'))
    timm = OrderedDict(
        (k, v) for k, v in hub.items() if '.backbone.' not in k)
    for key, value in result.state_dict.items():
        if key.startswith('backbone.') and 'num_batches_tracked' not in key:
            timm['model.backbone.conv_encoder.model.' +
                 key[len('backbone.'):]] = value
    assert_same(convert_state_dict(timm), result.state_dict)

    # Export to hf names: the hub key set (backbone spelled as timm's).
    exported = export_state_dict(result.state_dict, to='hf')
    assert sorted(exported) == sorted(timm)
    for key in exported:
        assert exported[key].shape == timm[key].shape, key


def _mmdet_model():
    from mmdet.registry import MODELS as MMDET_MODELS
    from mmengine.hub import get_config
    cfg = get_config(
        'mmdet::conditional_detr/conditional-detr_r50_8xb2-50e_coco.py')
    cfg.model.backbone.init_cfg = None
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MMDET_MODELS.build(cfg.model).eval()
    _perturb_(model, seed=2)
    return model


def test_mmdet_outputs_match(ours_model):
    mmdet_model = _mmdet_model()
    state = mmdet_model.state_dict()
    result = convert(state)
    assert result.source == 'mmdet' and not result.filled
    ours_model.load_state_dict(result.state_dict, strict=True)
    batch = make_batch(ours_model, [(64, 96), (48, 80)], seed=4)
    mine = _tensor_outputs(ours_model, batch)
    theirs = _tensor_outputs(mmdet_model, batch)
    for a, b in zip(mine, theirs):
        assert a.shape == b.shape
        assert (a - b).abs().max() < TOL
    # Export back: MMDetection's own model loads it strictly.
    mmdet_model.load_state_dict(
        export_state_dict(result.state_dict, to='mmdet'), strict=True)
