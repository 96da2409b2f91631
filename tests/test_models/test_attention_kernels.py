"""Which attention kernel runs, and that the kernels agree.

The selection is by device (CUDA simulated here by patching the capability
probe; the fused call then runs torch's CPU kernels), training, attention
dropout and ``record_attention``. The CUDA acceptance rules are those of
torch 2.13's sdp_utils.cpp for the memory-efficient and flash kernels.
"""
import pytest
import torch

from mmdet_conddetr.models.layers import attention_core
from mmdet_conddetr.models.layers.attention import (ConditionalCrossAttention,
                                                    ConditionalSelfAttention,
                                                    EncoderSelfAttention)
from mmdet_conddetr.models.layers.attention_core import (cuda_kernel_accepts,
                                                         explicit_attention,
                                                         fused_attention)

D, HEADS = 32, 4


@pytest.fixture
def spy(monkeypatch):
    """Names of the kernels called, by every attention module."""
    calls = []
    for name in ('explicit_attention', 'fused_attention'):
        original = getattr(attention_core, name)

        def wrapper(*args, _f=original, _n=name, **kwargs):
            calls.append(_n.split('_')[0])
            return _f(*args, **kwargs)

        for module in ('attention_core', 'attention'):
            monkeypatch.setattr(
                f'mmdet_conddetr.models.layers.{module}.{name}', wrapper)
    return calls


def run_attentions(dropout, training, record):
    x, pos = torch.randn(2, 6, D), torch.randn(2, 6, D)
    memory, memory_pos = torch.randn(2, 9, D), torch.randn(2, 9, D)
    mask = torch.zeros(2, 9, dtype=torch.bool)
    mask[0, 7:] = True
    encoder = EncoderSelfAttention(D, HEADS, dropout).train(training)
    encoder(memory, memory_pos, mask)
    decoder_self = ConditionalSelfAttention(D, HEADS, dropout).train(training)
    decoder_self(x, pos)
    cross = ConditionalCrossAttention(D, HEADS, dropout, True).train(training)
    cross.record_attention = record
    cross(x, pos, torch.randn(2, 6, D), memory, memory_pos, mask)


@pytest.mark.parametrize('record', [False, True])
@pytest.mark.parametrize('dropout', [0.0, 0.1])
@pytest.mark.parametrize('training', [False, True])
@pytest.mark.parametrize('device', ['cpu', 'cuda'])
def test_selected_path(device, training, dropout, record, spy, monkeypatch):
    if device == 'cuda':
        monkeypatch.setattr(attention_core, 'cuda_capability',
                            lambda x: (8, 0))
    run_attentions(dropout, training, record)
    dropping = training and dropout > 0
    # Explicit only where a fused kernel cannot do the job: attention
    # dropout on the CPU (no fused CPU kernel has dropout), and recording.
    expected = 'explicit' if dropping and device == 'cpu' else 'fused'
    cross = 'explicit' if record else expected
    assert spy == [expected, expected, cross]


def test_cuda_falls_back_to_explicit_when_no_kernel_takes_the_inputs(
        spy, monkeypatch):
    # bfloat16 before sm80: neither the memory-efficient nor flash kernel.
    monkeypatch.setattr(attention_core, 'cuda_capability', lambda x: (7, 5))
    attention = EncoderSelfAttention(D, HEADS, 0.1).to(torch.bfloat16)
    x = torch.randn(2, 5, D, dtype=torch.bfloat16)
    attention(x, x, None)
    attention.float()(x.float(), x.float(), None)
    assert spy == ['explicit', 'fused']


def tensors(dq=64, dv=32, dtype=torch.float32, offset=0):
    """q, k, v [2, 8, N, D]; ``offset`` elements into a larger buffer."""
    def make(n, d):
        buffer = torch.zeros(2 * 8 * n * d + offset, dtype=dtype)
        return buffer[offset:].view(2, 8, n, d)

    return make(5, dq), make(11, dq), make(11, dv)


@pytest.mark.parametrize('case, expected', [
    # memory-efficient kernel: masks, float32 and value width != key width
    (dict(), True),
    (dict(capability=(7, 5)), True),
    (dict(dtype=torch.bfloat16, capability=(7, 5)), False),
    (dict(dtype=torch.bfloat16), True),
    (dict(dtype=torch.float64), False),
    (dict(dv=30), False),  # float32 from sm80: multiples of 4
    (dict(dv=30, capability=(7, 5)), True),  # no alignment before sm80
    (dict(dtype=torch.float16, dq=36, dv=36), False),  # half: multiples of 8
    (dict(offset=2), False),  # start address not 16-byte aligned
    (dict(offset=2, capability=(7, 5)), True),
    (dict(offset=4), True),
    (dict(capability=(3, 7)), False),
    # flash kernel: unmasked, equal head dims, half types, sm80+
    (dict(dtype=torch.float16, dq=36, dv=36, masked=False), True),
    (dict(dtype=torch.float16, dq=196, dv=196, masked=False), True),
    (dict(dtype=torch.float16, dq=196, dv=196, masked=False,
          capability=(8, 6)), False),  # training head dim <= 192 on sm86
    (dict(dtype=torch.float16, dq=36, dv=36, masked=False,
          capability=(7, 5)), False),
])
def test_cuda_kernel_rules(case, expected):
    case = dict(case)
    capability = case.pop('capability', (8, 0))
    masked = case.pop('masked', True)
    q, k, v = tensors(**case)
    assert cuda_kernel_accepts(q, k, v, masked, capability) is expected


def test_cuda_kernel_rules_stride_and_query_key_width():
    q, k, v = tensors()
    assert not cuda_kernel_accepts(q, k[..., :32], v, True, (8, 0))
    strided = torch.zeros(2, 8, 11, 64)[..., ::2]
    assert not cuda_kernel_accepts(q[..., :32], k[..., :32], strided, True,
                                   (8, 0))


def test_cuda_kernel_rules_follow_the_backend_switches():
    q, k, v = tensors()
    assert cuda_kernel_accepts(q, k, v, True, (8, 0))
    torch.backends.cuda.enable_mem_efficient_sdp(False)
    try:
        assert not cuda_kernel_accepts(q, k, v, True, (8, 0))
    finally:
        torch.backends.cuda.enable_mem_efficient_sdp(True)


@pytest.mark.parametrize('dtype, tol', [(torch.float64, 1e-12),
                                        (torch.float32, 2e-6)])
@pytest.mark.parametrize('dv', [16, 32])
@pytest.mark.parametrize('masked', [False, True])
def test_explicit_and_fused_agree_in_value_and_gradient(
        masked, dv, dtype, tol):
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(*shape, generator=generator,
                           dtype=dtype).requires_grad_()
               for shape in ((2, 4, 7, 32), (2, 4, 13, 32), (2, 4, 13, dv)))
    mask = None
    if masked:
        mask = torch.zeros(2, 13, dtype=torch.bool)
        mask[1, 9:] = True
    grad_out = torch.randn(2, 4, 7, dv, generator=generator, dtype=dtype)
    results = []
    for attend in (explicit_attention, fused_attention):
        out = attend(q, k, v, mask, 0.0)
        results.append((out, *torch.autograd.grad(out, (q, k, v), grad_out)))
    for a, b in zip(*results):
        assert torch.allclose(a, b, atol=tol, rtol=tol)
    if masked:  # padded keys get no gradient
        assert torch.all(results[1][2][1, :, 9:] == 0)
