"""A faster forward of mmdet's ``ResNet`` with frozen (eval-mode) BatchNorm.

DETR-family backbones keep every BatchNorm in eval mode (``norm_eval=True``),
so each BN is a per-channel affine map ``y = s * x + (beta - s * mean)`` with
``s = gamma / sqrt(var + eps)``. :func:`resnet_forward` runs the same network
as ``ResNet.forward`` with three changes that leave the numbers the same up to
float rounding:

* every conv + BN pair is one convolution with the BN folded into it,
  ``conv(x, w * s) + (beta - s * mean)``. The folded weight is computed in the
  forward from the module's own parameters (nothing is cached and the
  parameters and state-dict keys are untouched), so it stays exact while the
  weights train: the gradient reaches the conv weight (and the BN affine
  parameters if they are trainable) through the product;
* the activations are channels-last (NHWC), the layout oneDNN (CPU) and cuDNN
  tensor cores run fastest;
* on CPU where autograd has nothing to record (inference, and the frozen
  stem and first stage while training), ReLU and the residual addition are
  fused into the convolutions with oneDNN post-ops (the kernels PyTorch's
  inductor uses), saving two passes over every activation.

Anything this function does not know exactly (BN in training mode, a
non-``BatchNorm2d`` norm, plugins, DCN, a deep stem, ``avg_down``, gradient
checkpointing, a subclass with its own ``forward``) makes
:func:`supports_fast_resnet` return False, and callers then use the module's
own forward.
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from mmdet.models.backbones import ResNet
from mmdet.models.backbones.resnet import BasicBlock, Bottleneck
from torch import Tensor, nn

_MKLDNN_FUSION = (torch.backends.mkldnn.is_available()
                  and hasattr(torch.ops.mkldnn, '_convolution_pointwise'))


def _is_plain_conv(module: nn.Module) -> bool:
    return type(module) is nn.Conv2d and module.padding_mode == 'zeros'


def _is_frozen_bn(module: nn.Module) -> bool:
    return (isinstance(module, nn.modules.batchnorm._BatchNorm)
            and not module.training and module.track_running_stats
            and module.running_mean is not None and module.affine)


def _block_supported(block: nn.Module) -> bool:
    if type(block) not in (Bottleneck, BasicBlock):
        return False
    # BasicBlock has no dcn/plugins attributes (it supports neither).
    if block.with_cp or getattr(block, 'dcn', None) is not None or getattr(
            block, 'with_plugins', False) or getattr(block, 'plugins',
                                                     None) is not None:
        return False
    pairs = [(block.conv1, block.norm1), (block.conv2, block.norm2)]
    if isinstance(block, Bottleneck):
        pairs.append((block.conv3, block.norm3))
    if block.downsample is not None:
        down = block.downsample
        if not (type(down) is nn.Sequential and len(down) == 2):
            return False
        pairs.append((down[0], down[1]))
    return all(
        _is_plain_conv(conv) and _is_frozen_bn(norm) for conv, norm in pairs)


def supports_fast_resnet(backbone: nn.Module) -> bool:
    """Whether :func:`resnet_forward` computes exactly ``backbone.forward``.

    Checked on every call (it is cheap): the answer changes with the BN
    modes, e.g. a ResNet with ``norm_eval=False`` in training mode.
    """
    if type(backbone).forward is not ResNet.forward:
        return False
    if backbone.deep_stem or not (_is_plain_conv(backbone.conv1)
                                  and _is_frozen_bn(backbone.norm1)):
        return False
    if type(backbone.maxpool) is not nn.MaxPool2d:
        return False
    return all(
        _block_supported(block) for name in backbone.res_layers
        for block in getattr(backbone, name))


def _folded(conv: nn.Conv2d, norm: nn.Module) -> Tuple[Tensor, Tensor]:
    """Weight and bias of ``norm(conv(x))`` as one convolution."""
    scale = norm.weight * torch.rsqrt(norm.running_var + norm.eps)
    shift = norm.bias - norm.running_mean * scale
    if conv.bias is not None:
        shift = shift + conv.bias * scale
    return conv.weight * scale.reshape(-1, 1, 1, 1), shift


def _needs_grad(*tensors: Optional[Tensor]) -> bool:
    return any(t is not None and t.requires_grad for t in tensors)


class _ConvRunner:
    """Runs folded convolutions, fused with oneDNN post-ops when allowed.

    The fused kernels have no backward, so they run only where autograd has
    nothing to record: without grad mode (inference) or, while training, on
    the frozen stem and stages (``frozen_stages``: no parameter and not the
    input requires a gradient).
    """

    def __init__(self, x: Tensor):
        self.can_fuse = (_MKLDNN_FUSION and x.device.type == 'cpu'
                         and x.dtype == torch.float32
                         and not torch.is_autocast_enabled('cpu'))

    def __call__(self,
                 x: Tensor,
                 conv: nn.Conv2d,
                 norm: nn.Module,
                 relu: bool,
                 residual: Optional[Tensor] = None) -> Tensor:
        weight, bias = _folded(conv, norm)
        fuse = self.can_fuse and (not torch.is_grad_enabled() or
                                  not _needs_grad(x, residual, weight, bias))
        if fuse:
            args = (list(conv.padding), list(conv.stride), list(conv.dilation),
                    conv.groups)
            if residual is not None:
                # relu(conv(x) + residual) in one kernel.
                return torch.ops.mkldnn._convolution_pointwise.binary(
                    x, residual, weight, bias, *args, 'add', None,
                    'relu' if relu else None, [], None)
            return torch.ops.mkldnn._convolution_pointwise(
                x, weight, bias, *args, 'relu' if relu else 'none', [], None)
        out = F.conv2d(x, weight, bias, conv.stride, conv.padding,
                       conv.dilation, conv.groups)
        if residual is not None:
            out = out + residual
        return F.relu(out) if relu else out


def _block_forward(block: nn.Module, x: Tensor, run: _ConvRunner) -> Tensor:
    identity = x
    if block.downsample is not None:
        identity = run(x, block.downsample[0], block.downsample[1], False)
    out = run(x, block.conv1, block.norm1, True)
    if isinstance(block, Bottleneck):
        out = run(out, block.conv2, block.norm2, True)
        return run(out, block.conv3, block.norm3, True, identity)
    return run(out, block.conv2, block.norm2, True, identity)


def resnet_forward(backbone: ResNet,
                   x: Tensor,
                   channels_last: bool = True) -> Tuple[Tensor, ...]:
    """``backbone(x)`` with folded BN (see the module docstring).

    Only call it when :func:`supports_fast_resnet` is True. Returns the
    ``out_indices`` stages, channels-last when ``channels_last``.
    """
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    run = _ConvRunner(x)
    x = run(x, backbone.conv1, backbone.norm1, True)
    x = backbone.maxpool(x)
    outs = []
    for index, name in enumerate(backbone.res_layers):
        for block in getattr(backbone, name):
            x = _block_forward(block, x, run)
        if index in backbone.out_indices:
            outs.append(x)
    return tuple(outs)
