"""CUDA mixed precision emulated on the CPU (tests of issue 13).

CPU autocast casts a different set of ops than CUDA autocast (on the CPU,
``log``, ``exp``, ``pow`` and ``layer_norm`` stay in half precision), and the
CUDA focal loss is mmcv's kernel, which the CPU never runs. So that the CPU
tests see what a GPU run sees:

* :class:`CudaAutocast` is a ``TorchFunctionMode`` applying CUDA autocast's
  casting rules (torch's ``autocast_mode.cpp``, CUDA lists): matmul-like ops
  output ``dtype`` (inputs rounded to it, fp32 accumulation), the ops CUDA
  pins to fp32 in fp32, everything else in the dtype of its inputs.
  Convolutions are left in fp32 (the backbone is not what these tests are
  about, and half-precision convolution is slow on the CPU).
* :class:`MMCVFocalKernel` evaluates mmcv's ``sigmoid_focal_loss`` CUDA
  kernels (forward and backward) in the input's dtype (``FLT_MIN`` cast to
  the dtype, which is 0 in fp16; no kernel for bfloat16);
  :func:`emulate_mmcv_focal_loss` makes mmdet's ``FocalLoss`` use them, as
  it does for CUDA tensors.
"""
import contextlib
from unittest import mock

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

_LOW = {
    F.linear, torch.matmul,
    torch.mm, torch.bmm, torch.baddbmm, torch.addmm, torch.einsum,
    torch.Tensor.matmul, torch.Tensor.__matmul__, torch.Tensor.mm,
    torch.Tensor.bmm, F.scaled_dot_product_attention
}
_FP32 = {
    torch.log, torch.Tensor.log, torch.exp, torch.Tensor.exp, torch.log1p,
    torch.Tensor.log1p, torch.log2, torch.expm1, torch.reciprocal,
    torch.Tensor.reciprocal, torch.rsqrt, torch.Tensor.rsqrt, torch.pow,
    torch.Tensor.pow, torch.Tensor.__pow__, torch.Tensor.__rpow__,
    F.softplus, F.layer_norm, F.group_norm, torch.norm, torch.Tensor.norm,
    F.l1_loss, F.smooth_l1_loss, F.mse_loss, F.binary_cross_entropy_with_logits,
    torch.cdist, torch.logsumexp, torch.prod, F.softmax, F.log_softmax,
    torch.softmax, torch.Tensor.softmax, torch.sum, torch.Tensor.sum
}


def _cast(value, dtype):
    if isinstance(value, torch.Tensor) and value.is_floating_point():
        return value.to(dtype)
    if isinstance(value, (list, tuple)):
        return type(value)(_cast(item, dtype) for item in value)
    return value


def _round(value, dtype):
    return _cast(_cast(value, dtype), torch.float32)


class CudaAutocast(TorchFunctionMode):
    """CUDA autocast's casting rules for ``dtype`` (fp16 or bf16)."""

    def __init__(self, dtype=torch.float16):
        super().__init__()
        self.dtype = dtype

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _LOW:
            # Inputs rounded to ``dtype``, products accumulated in fp32 and
            # the result rounded to ``dtype``: what cuBLAS does, and fast
            # on CPUs without half-precision matrix units.
            args, kwargs = _round(args, self.dtype), {
                k: _round(v, self.dtype) for k, v in kwargs.items()}
            return _cast(func(*args, **kwargs), self.dtype)
        if func in _FP32:
            args, kwargs = _cast(args, torch.float32), {
                k: _cast(v, torch.float32) for k, v in kwargs.items()}
        return func(*args, **kwargs)


class MMCVFocalKernel(torch.autograd.Function):
    """mmcv's ``sigmoid_focal_loss`` CUDA forward and backward kernels,
    elementwise, evaluated in ``pred.dtype`` as the kernels' template type
    ``T``: ``p`` from ``expf`` then stored as ``T``, ``log(max(p,
    (T)FLT_MIN))`` with ``(T)FLT_MIN == 0`` in fp16.

    ``apply(pred [N, C], target [N, C] one-hot, gamma, alpha)``.
    """

    @staticmethod
    def _terms(pred, target):
        if pred.dtype == torch.bfloat16:
            raise RuntimeError('"sigmoid_focal_loss_forward_cuda_kernel" not '
                               "implemented for 'BFloat16'")
        kind = pred.dtype
        p = torch.sigmoid(pred.float()).to(kind)
        tiny = torch.tensor(torch.finfo(torch.float32).tiny).to(kind)
        one = torch.ones((), dtype=kind)
        log_p = torch.log(torch.maximum(p, tiny).float()).to(kind)
        log_q = torch.log(torch.maximum(one - p, tiny).float()).to(kind)
        return p, one - p, log_p, log_q, target.to(kind), (1 - target).to(kind)

    @staticmethod
    def forward(ctx, pred, target, gamma, alpha):
        p, q, log_p, log_q, flag_p, flag_n = MMCVFocalKernel._terms(
            pred, target)
        ctx.save_for_backward(pred, target)
        ctx.gamma, ctx.alpha = gamma, alpha
        term_p = q**gamma * log_p
        term_n = p**gamma * log_q
        return -flag_p * alpha * term_p - flag_n * (1 - alpha) * term_n

    @staticmethod
    def backward(ctx, grad):
        pred, target = ctx.saved_tensors
        gamma, alpha = ctx.gamma, ctx.alpha
        p, q, log_p, log_q, flag_p, flag_n = MMCVFocalKernel._terms(
            pred, target)
        term_p = q**gamma * (q - gamma * p * log_p)
        term_n = p**gamma * (gamma * q * log_q - p)
        grad_input = -flag_p * alpha * term_p - flag_n * (1 - alpha) * term_n
        return grad_input * grad.to(grad_input.dtype), None, None, None


@contextlib.contextmanager
def emulate_mmcv_focal_loss():
    """mmdet's ``FocalLoss`` computes its elementwise loss as the CUDA
    kernel would (the CPU path passes a one-hot target [N, C])."""
    from mmdet.models.losses import focal_loss
    from mmdet.models.losses.utils import weight_reduce_loss

    def loss(pred, target, weight=None, gamma=2.0, alpha=0.25,
             reduction='mean', avg_factor=None):
        elementwise = MMCVFocalKernel.apply(pred, target, gamma, alpha)
        return weight_reduce_loss(elementwise, weight, reduction, avg_factor)

    with mock.patch.object(focal_loss, 'py_sigmoid_focal_loss', loss):
        yield
