"""Mixed precision safety of the head, the matcher and the reference points
(issue 13), under CUDA autocast emulated on the CPU (helpers/cuda_amp.py):
a training step of the R50 model with class logits pushed to ±20 and
reference-head outputs to ±8 is finite in fp16 and bf16, and the class loss
and the matching cost get fp32 inputs."""
import pytest
import torch
from helpers.amp_thresholds import r50_model, training_step
from helpers.cuda_amp import CudaAutocast, MMCVFocalKernel
from mmdet.models.layers.transformer.utils import inverse_sigmoid
from mmdet.models.losses.focal_loss import py_sigmoid_focal_loss
from test_head import build_head, sample


@pytest.fixture(scope='module')
def model():
    torch.manual_seed(0)
    return r50_model()


def test_emulated_mmcv_kernel_is_mmdets_loss_in_fp32_and_breaks_in_fp16():
    """The emulation is right where it must agree (fp32) and shows the
    fp16 failure the head has to avoid (logits above 8.3 / below -17.3)."""
    logits = torch.tensor([[-20., -17.5, -12., 0., 5., 8.4, 20.]])
    target = torch.zeros_like(logits)
    target[0, ::2] = 1
    ours = logits.clone().requires_grad_()
    theirs = logits.clone().requires_grad_()
    MMCVFocalKernel.apply(ours, target, 2.0, 0.25).sum().backward()
    py_sigmoid_focal_loss(theirs, target, reduction='sum').backward()
    assert torch.allclose(ours.grad, theirs.grad, atol=1e-6)
    half = logits.half().requires_grad_()
    loss = MMCVFocalKernel.apply(half, target, 2.0, 0.25)
    assert torch.isfinite(loss[0, 2:5]).all()
    assert not torch.isfinite(loss[0, [0, 1, 5, 6]]).any()
    with pytest.raises(RuntimeError, match='BFloat16'):
        MMCVFocalKernel.apply(logits.bfloat16(), target, 2.0, 0.25)


def test_cuda_autocast_emulation_casting_rules():
    weight = torch.randn(4, 3)
    with CudaAutocast(torch.float16):
        out = torch.nn.functional.linear(torch.randn(2, 3), weight)
        assert out.dtype == torch.float16
        assert torch.log(out.abs() + 1).dtype == torch.float32
        assert out.sigmoid().dtype == torch.float16


def test_fp16_reference_points_break_inverse_sigmoid():
    """Why the decoder's sigmoid and the head's inverse_sigmoid are fp32:
    in fp16 (with CUDA's fp32 ``log``) the gradient of
    ``inverse_sigmoid(sigmoid(z))`` overflows from z = 5.7 and the value is
    inf from z = 8.4 (the sigmoid rounds to 1); in fp32 both are exact."""
    z = torch.tensor([5.7, 8.0, 9.0])
    values, grads = {}, {}
    for dtype in (torch.float16, torch.float32):
        z_ = z.to(dtype).requires_grad_()
        with CudaAutocast(torch.float16):
            values[dtype] = inverse_sigmoid(z_.sigmoid())
        values[dtype].float().sum().backward()
        grads[dtype] = z_.grad
    assert torch.isinf(grads[torch.float16][:2]).all()
    assert torch.isinf(values[torch.float16][2])
    assert torch.allclose(values[torch.float32], z, atol=1e-3)
    assert torch.allclose(grads[torch.float32], torch.ones(3), atol=1e-3)


def test_head_outputs_and_losses_are_fp32_for_half_inputs():
    head = build_head(num_classes=3, embed_dims=8)
    hidden = torch.randn(2, 1, 4, 8).half()
    references = torch.rand(1, 4, 2).half()
    gt = sample(40, 60, [[5., 5., 30., 20.]], [1])
    with CudaAutocast(torch.float16):
        logits, boxes = head(hidden, references)
        losses = head.loss(hidden, references, [gt])
    assert logits.dtype == boxes.dtype == torch.float32
    assert {value.dtype for value in losses.values()} == {torch.float32}


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_training_step_with_extreme_logits_and_references(model, dtype):
    record = []
    # the class branch's own output dtype, before the pushed values replace
    # it (this hook runs before the one training_step adds)
    outputs = []
    handle = model.bbox_head.fc_cls.register_forward_hook(
        lambda module, args, out: outputs.append(out.dtype))
    try:
        result = training_step(model, dtype, logit=20.0, ref=8.0,
                               record=record)
    finally:
        handle.remove()
    assert result == dict(loss=True, grads=True)
    seen = dict()
    for what, kind in record:
        seen.setdefault(what, set()).add(kind)
    assert seen == {
        'loss_cls': {torch.float32},  # one call per decoder layer
        'cost': {torch.float32},  # class logits and boxes
        'references': {torch.float32},
    }
    assert len(record) == 6 + 2 + 1
    # the two linear branches do run in half precision
    assert set(outputs) == {dtype}
