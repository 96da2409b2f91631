"""layers.dropout against the definition of (inverted) dropout.

Dropout zeroes each element independently with probability p and scales the
rest by 1 / (1 - p); the gradient is the same mask applied to the incoming
gradient. The checks below are written from that definition, not from the
implementation: the kept fraction against a binomial bound, the scale against
1 / (1 - p), the gradient against the mask read off the output.
"""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmdet_conddetr.models.layers.dropout import Dropout, dropout

N = 200_003  # not a multiple of 4: the last 64-bit draw is used in part


@pytest.mark.parametrize('p', [0.1, 0.5, 0.9])
def test_keeps_a_fraction_1_minus_p_scaled_by_its_inverse(p):
    x = torch.randn(N, dtype=torch.float64).abs() + 1.0  # never zero
    out = dropout(x, p)
    kept = out != 0
    # Binomial(N, 1 - p): 6 standard deviations.
    sigma = math.sqrt(N * p * (1 - p))
    assert abs(kept.sum().item() - N * (1 - p)) < 6 * sigma
    assert torch.equal(out[kept], x[kept] * (1.0 / (1.0 - p)))


def test_elements_are_independent_across_the_four_per_draw():
    """Four elements share one 64-bit draw; their masks must not be
    correlated (each lane kept with 1 - p, pairs with (1 - p)^2)."""
    p = 0.5
    kept = (dropout(torch.ones(4 * 50_000), p) != 0).view(-1, 4).double()
    count = kept.shape[0]
    sigma = math.sqrt(count * 0.25)
    for lane in range(4):
        assert abs(kept[:, lane].sum() - count * 0.5) < 6 * sigma
    both = (kept[:, 0] * kept[:, 3]).sum()
    assert abs(both - count * 0.25) < 6 * math.sqrt(count * 0.25 * 0.75)


def test_gradient_is_the_output_mask_times_the_scale():
    p = 0.3
    x = (torch.rand(7, 11, 13, dtype=torch.float64) + 0.5).requires_grad_()
    out = dropout(x, p)
    grad_out = torch.randn_like(out)
    out.backward(grad_out)
    expected = torch.where(out != 0, grad_out / (1 - p), 0.0)
    assert torch.allclose(x.grad, expected, rtol=0, atol=1e-15)


def test_same_seed_same_mask_and_new_draws_differ():
    x = torch.ones(3, 1000)
    torch.manual_seed(5)
    first = dropout(x, 0.2)
    second = dropout(x, 0.2)
    torch.manual_seed(5)
    assert torch.equal(dropout(x, 0.2), first)
    assert not torch.equal(first, second)


@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
def test_keeps_dtype_and_shape(dtype):
    x = torch.randn(2, 3, 5, dtype=dtype)
    out = dropout(x, 0.1)
    assert out.dtype == dtype and out.shape == x.shape


def test_is_f_dropout_where_no_mask_is_drawn():
    x = torch.randn(4, 6)
    assert torch.equal(dropout(x, 0.1, training=False), x)
    assert torch.equal(dropout(x, 0.0), x)
    assert torch.equal(dropout(x, 1.0), torch.zeros_like(x))
    empty = torch.empty(0, 8)
    assert dropout(empty, 0.1).shape == empty.shape


def test_module_is_an_nn_dropout_with_the_same_state():
    module = Dropout(0.1)
    assert isinstance(module, nn.Dropout) and module.p == 0.1
    assert module.state_dict() == nn.Dropout(0.1).state_dict()
    x = torch.ones(4000)
    assert torch.equal(module.eval()(x), x)
    trained = module.train()(x)
    assert 0 < (trained == 0).sum() < x.numel()
    inplace = Dropout(0.5, inplace=True).train()
    y = torch.ones(100)
    assert inplace(y) is y and (y == 0).any()


def test_transformer_layers_use_it():
    from mmdet_conddetr.models.layers.transformer import (
        ConditionalDETRTransformerDecoderLayer,
        ConditionalDETRTransformerEncoderLayer)
    for layer in (ConditionalDETRTransformerEncoderLayer(32, 4, 64),
                  ConditionalDETRTransformerDecoderLayer(32, 4, 64)):
        drops = [m for m in layer.modules() if isinstance(m, nn.Dropout)]
        assert drops and all(type(m) is Dropout for m in drops)


def test_matches_f_dropout_in_distribution_of_the_scale():
    """Kept values equal F.dropout's kept values (same scale)."""
    x = torch.full((10_000, ), 3.0)
    ours = dropout(x, 0.25)
    theirs = F.dropout(x, 0.25)
    assert set(ours.unique().tolist()) == set(theirs.unique().tolist())
