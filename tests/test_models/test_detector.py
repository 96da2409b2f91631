"""The detector follows the official model where mmdet's built-in differs."""
import math

import pytest
import torch
from mmengine.optim import build_optim_wrapper
from torch import nn

from builders import build_model, load_config, make_batch

SMALL = dict(num_queries=12)


@pytest.fixture(scope='module')
def model():
    return build_model('r50_50ep.py', **SMALL)


def test_dropout_after_every_attention_and_in_the_ffn(model):
    """mmdet's built-in builds its attentions with proj_drop=0; the official
    layers drop 0.1 on the attention weights, after the attention and in the
    FFN, in the encoder and in the decoder."""
    for layer in model.encoder.layers:
        assert layer.self_attn.attn_drop == 0.1
        assert layer.dropout1.p == layer.dropout2.p == 0.1
        assert layer.ffn.dropout.p == 0.1
    for layer in model.decoder.layers:
        assert layer.self_attn.attn_drop == layer.cross_attn.attn_drop == 0.1
        assert layer.dropout1.p == layer.dropout2.p == layer.dropout3.p == 0.1
        assert layer.ffn.dropout.p == 0.1


def test_dropout_is_active_in_training_only(model):
    batch = make_batch(model, [(64, 96)])
    model.train()
    torch.manual_seed(0)
    first = model(**batch, mode='tensor')[0]
    second = model(**batch, mode='tensor')[0]
    model.eval()
    with torch.no_grad():
        third = model(**batch, mode='tensor')[0]
        fourth = model(**batch, mode='tensor')[0]
    assert not torch.allclose(first, second)
    assert torch.equal(third, fourth)


def test_xavier_initialisation_of_the_transformer(model):
    for coder in (model.encoder, model.decoder):
        for name, param in coder.named_parameters():
            if param.dim() < 2:
                continue
            fan_out, fan_in = param.shape
            bound = math.sqrt(6 / (fan_in + fan_out))
            assert param.abs().max() <= bound + 1e-6, name
            # A uniform(-b, b) sample of this size reaches close to b.
            assert param.abs().max() > 0.9 * bound, name
    for name, param in model.named_parameters():
        if name.endswith('out_proj.bias') or name.endswith('in_proj.bias'):
            assert torch.all(param == 0), name


def test_only_the_first_decoder_layer_has_the_query_position_projection(model):
    projections = [layer.cross_attn.qpos_proj for layer in model.decoder.layers]
    assert isinstance(projections[0], nn.Linear)
    assert all(p is None for p in projections[1:])


def test_frozen_backbone_parts_and_backbone_lr(model):
    model.train()
    backbone = model.backbone
    for name, param in backbone.named_parameters():
        frozen = name.startswith(('conv1', 'bn1', 'layer1')) or '.bn' in name \
            or 'downsample.1' in name
        assert param.requires_grad != frozen, name
    batch_norms = [m for m in backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    assert batch_norms and not any(m.training for m in batch_norms)
    cfg = load_config('r50_50ep.py')
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    lrs = {}
    for group in wrapper.optimizer.param_groups:
        for param in group['params']:
            lrs[id(param)] = group['lr']
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        expected = 1e-5 if name.startswith('backbone') else 1e-4
        assert lrs[id(param)] == pytest.approx(expected), name
    assert type(wrapper.optimizer).__name__ == 'AdamW'
    assert wrapper.clip_grad_kwargs['max_norm'] == 0.1


def test_tensor_mode_shapes(model):
    model.eval()
    batch = make_batch(model, [(64, 96), (80, 64)])
    with torch.no_grad():
        logits, boxes = model(**batch, mode='tensor')
    assert logits.shape == (6, 2, 12, 80)
    assert boxes.shape == (6, 2, 12, 4)
    assert boxes.min() >= 0 and boxes.max() <= 1


def test_attention_recording_is_off_by_default_and_changes_nothing(model):
    model.eval()
    batch = make_batch(model, [(64, 96), (96, 64)])
    cross = model.decoder.layers[-1].cross_attn
    assert cross.record_attention is False
    with torch.no_grad():
        plain = model(**batch, mode='tensor')
        assert cross.last_attention is None
        cross.record_attention = True
        try:
            recorded = model(**batch, mode='tensor')
        finally:
            cross.record_attention = False
    for a, b in zip(plain, recorded):
        assert torch.allclose(a, b, atol=1e-5)
    weights = cross.last_attention
    assert weights.shape[:3] == (2, 8, 12)
    assert torch.allclose(weights.sum(-1), torch.ones(2, 8, 12), atol=1e-5)
    # The padded memory positions of the second (narrower) image get no weight.
    stride = 32
    height, width = 96 // stride, 96 // stride
    padded = weights[1].view(8, 12, height, width)[..., 64 // stride:]
    assert torch.all(padded == 0)
