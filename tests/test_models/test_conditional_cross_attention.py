"""ConditionalCrossAttention against the paper's formula written out plainly.

The reference below follows the paper ("Conditional Cross-Attention"): per
head the query is the concatenation [c_q ; p_q] and the key [c_k ; p_k], so
the logit is c_q.c_k + p_q.p_k, scaled by 1/sqrt(2 d_head), softmax over the
unpadded keys, values v; plus the official first-layer additions. It loops
over heads, builds every projection from the module's own linears one by one
and writes the softmax as exp / sum, so it shares no code with the module's
fused projections, packed memory layout or kernels.

All three forward paths of the module are checked against it, in value and
gradient: recording the weights, attention dropout (same dropout mask from
the same seed), and the fused kernel.
"""
import pytest
import torch
import torch.nn.functional as F

from mmdet_conddetr.models.layers import attention_core
from mmdet_conddetr.models.layers.attention import ConditionalCrossAttention
from mmdet_conddetr.models.layers.dropout import dropout as layer_dropout
from mmdet_conddetr.models.layers.fused_projections import project_memory

B, NQ, NK, D, HEADS = 2, 5, 11, 32, 4
PADDED = 7  # the second image's memory is padded from this key on


def linear(module, x):
    return x @ module.weight.T + module.bias


def paper_cross_attention(attn, inputs, dropout_keep=None):
    """Conditional cross-attention as the paper writes it.

    Returns the output [B, NQ, D] and the softmax weights [B, H, NQ, NK].
    """
    query, query_pos, sine, memory, memory_pos, mask = inputs
    c_q = linear(attn.qcontent_proj, query)
    p_q = linear(attn.qpos_sine_proj, sine)
    c_k = linear(attn.kcontent_proj, memory)
    p_k = linear(attn.kpos_proj, memory_pos)
    v = linear(attn.v_proj, memory)
    if attn.is_first:  # official code: DETR's positional terms, first layer
        c_q = c_q + linear(attn.qpos_proj, query_pos)
        c_k = c_k + p_k
    dh = D // HEADS
    outs, all_weights = [], []
    for h in range(HEADS):
        part = slice(h * dh, (h + 1) * dh)
        q_h = torch.cat([c_q[..., part], p_q[..., part]], -1)
        k_h = torch.cat([c_k[..., part], p_k[..., part]], -1)
        logits = torch.einsum('bqc,bkc->bqk', q_h, k_h) / (2 * dh)**0.5
        logits = logits.masked_fill(mask[:, None, :], float('-inf'))
        expo = torch.exp(logits - logits.max(-1, keepdim=True).values)
        weights = expo / expo.sum(-1, keepdim=True)
        all_weights.append(weights)
        if dropout_keep is not None:
            weights = weights * dropout_keep[:, h]
        outs.append(torch.einsum('bqk,bkc->bqc', weights, v[..., part]))
    out = linear(attn.out_proj, torch.cat(outs, -1))
    return out, torch.stack(all_weights, 1)


def make_inputs(seed=0, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.randn(*shape, generator=generator,
                           dtype=dtype).requires_grad_()

    mask = torch.zeros(B, NK, dtype=torch.bool)
    mask[1, PADDED:] = True
    return (rand(B, NQ, D), rand(B, NQ, D), rand(B, NQ, D), rand(B, NK, D),
            rand(B, NK, D), mask)


def make_attention(is_first, attn_drop=0.0, dtype=torch.float64):
    torch.manual_seed(1)
    attn = ConditionalCrossAttention(D, HEADS, attn_drop,
                                     is_first).to(dtype)
    for param in attn.parameters():  # non-zero biases, so they are checked
        torch.nn.init.normal_(param, std=0.3)
    return attn


def run_module(attn, inputs, packed):
    """Forward through the module's own projections, or through the packed
    memory and query projection the decoder precomputes."""
    query, query_pos, sine, memory, memory_pos, mask = inputs
    if not packed:
        return attn(query, query_pos, sine, memory, memory_pos, mask)
    memories = project_memory([attn], memory, memory_pos)
    query_pos_proj = attn.qpos_proj(query_pos) if attn.is_first else None
    return attn(query, None, sine, None, None, mask, memories[0],
                query_pos_proj)


def gradients(out, attn, inputs):
    """Gradients of a fixed random projection of ``out`` w.r.t. the float
    inputs and every parameter."""
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(
        5), dtype=out.dtype)
    tensors = [t for t in inputs if t.is_floating_point()]
    tensors += list(attn.parameters())
    return torch.autograd.grad((out * weights).sum(), tensors,
                               allow_unused=True)


def assert_same(out, grads, ref_out, ref_grads, tol=1e-10):
    assert torch.allclose(out, ref_out, atol=tol, rtol=tol)
    assert len(grads) == len(ref_grads)
    for grad, ref_grad in zip(grads, ref_grads):
        # None: unused by both (query_pos after the first layer).
        assert (grad is None) == (ref_grad is None)
        assert grad is None or torch.allclose(
            grad, ref_grad, atol=tol, rtol=tol)
    assert sum(grad is None for grad in grads) <= 1


@pytest.mark.parametrize('packed', [False, True])
@pytest.mark.parametrize('is_first', [True, False])
def test_fused_path_matches_the_paper(is_first, packed, monkeypatch):
    attn = make_attention(is_first).eval()
    calls = []
    fused = attention_core.fused_attention
    monkeypatch.setattr(
        'mmdet_conddetr.models.layers.attention.fused_attention',
        lambda *args: calls.append(args[2].shape) or fused(*args))
    inputs = make_inputs()
    out = run_module(attn, inputs, packed)
    # The widened values [v | k_content] went to the fused kernel.
    assert calls == [(B, HEADS, NK, 2 * D // HEADS)]
    ref_out, _ = paper_cross_attention(attn, inputs)
    assert_same(out, gradients(out, attn, inputs), ref_out,
                gradients(ref_out, attn, inputs))


@pytest.mark.parametrize('is_first', [True, False])
def test_recording_path_matches_the_paper(is_first):
    attn = make_attention(is_first).eval()
    attn.record_attention = True
    inputs = make_inputs(seed=2)
    out = run_module(attn, inputs, packed=True)
    ref_out, ref_weights = paper_cross_attention(attn, inputs)
    assert torch.allclose(attn.last_attention, ref_weights, atol=1e-12)
    assert torch.all(attn.last_attention[1, ..., PADDED:] == 0)
    assert_same(out, gradients(out, attn, inputs), ref_out,
                gradients(ref_out, attn, inputs))


@pytest.mark.parametrize('device', ['cpu', 'cuda'])
@pytest.mark.parametrize('is_first', [True, False])
def test_dropout_path_matches_the_paper(is_first, device, monkeypatch):
    """Training with attention dropout: explicit on the CPU; on CUDA (its
    selection simulated, the fused call then runs torch's CPU math kernel)
    through scaled_dot_product_attention with dropout_p. Each draws the mask
    its kernel's dropout draws on a tensor of the weights' shape from the
    same seed: ours on the CPU (layers.dropout), torch's in the fused call.
    (float32: no CUDA kernel takes float64, so it would run explicitly.)"""
    dtype, tol = torch.float64, 1e-10
    if device == 'cuda':
        dtype, tol = torch.float32, 2e-5
        monkeypatch.setattr(attention_core, 'cuda_capability',
                            lambda x: (8, 0))
    paths = []
    for name in ('explicit_attention', 'fused_attention'):
        original = getattr(attention_core, name)
        monkeypatch.setattr(
            f'mmdet_conddetr.models.layers.attention.{name}',
            lambda *a, _f=original, _n=name, **k: paths.append(_n) or _f(
                *a, **k))
    attn = make_attention(is_first, attn_drop=0.4, dtype=dtype).train()
    inputs = make_inputs(seed=3, dtype=dtype)
    torch.manual_seed(11)
    out = run_module(attn, inputs, packed=True)
    assert paths == ['explicit_attention' if device == 'cpu' else
                     'fused_attention']
    torch.manual_seed(11)
    draw = layer_dropout if device == 'cpu' else F.dropout
    keep = draw(torch.ones(B, HEADS, NQ, NK, dtype=dtype), 0.4)
    assert 0 < (keep == 0).sum() < keep.numel()
    ref_out, _ = paper_cross_attention(attn, inputs, dropout_keep=keep)
    assert_same(out, gradients(out, attn, inputs), ref_out,
                gradients(ref_out, attn, inputs), tol)
    # The dropout did something: without it the output differs.
    no_drop, _ = paper_cross_attention(attn, inputs)
    assert not torch.allclose(out, no_drop, atol=1e-3)
