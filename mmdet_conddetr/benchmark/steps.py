"""The timed calls: inference, transformer + head, one training step.

Each ``*_fn`` returns a closure with no arguments so the timing loop can
interleave the two models' calls without knowing what they do.
"""
import copy
from contextlib import nullcontext
from typing import Any, Callable, Dict

import torch
from torch import nn


def amp_context(device: str, amp: bool) -> Callable:
    """A factory of autocast contexts (fp16 on CUDA, bf16 on CPU), or of
    null contexts without ``amp``."""
    if not amp:
        return nullcontext
    dtype = torch.float16 if device.startswith('cuda') else torch.bfloat16
    return lambda: torch.autocast(device.split(':')[0], dtype=dtype)


def inference_fn(model: nn.Module, data: Dict[str, Any], device: str,
                 amp: bool) -> Callable[[], Any]:
    """``model(..., mode='predict')`` without gradients."""
    ctx = amp_context(device, amp)

    def run():
        with torch.no_grad(), ctx():
            return model(data['inputs'], data['data_samples'], mode='predict')

    return run


def transformer_fn(model: nn.Module, data: Dict[str, Any], device: str,
                   amp: bool) -> Callable[[], Any]:
    """Encoder + decoder + head on fixed backbone features."""
    ctx = amp_context(device, amp)
    with torch.no_grad(), ctx():
        feats = model.extract_feat(data['inputs'])

    def run():
        with torch.no_grad(), ctx():
            head_inputs = model.forward_transformer(feats,
                                                    data['data_samples'])
            return model.bbox_head.forward(**head_inputs)

    return run


def build_optim_wrapper(model: nn.Module, device: str, amp: bool):
    """The optimizer wrapper of the model's own config (AdamW + clipping)."""
    from mmengine.optim import build_optim_wrapper as build
    from mmengine.registry import DefaultScope
    cfg = copy.deepcopy(model.benchmark_cfg.optim_wrapper)
    if amp and device.startswith('cuda'):
        cfg['type'] = 'AmpOptimWrapper'
    with DefaultScope.overwrite_default_scope('mmdet'):
        return build(model, cfg)


def train_fn(model: nn.Module, optim_wrapper, data: Dict[str, Any],
             device: str, amp: bool) -> Callable[[], Any]:
    """Forward + losses + backward + the optimizer step."""
    cuda_amp = amp and device.startswith('cuda')
    ctx = (lambda: optim_wrapper.optim_context(model)) if cuda_amp else (
        amp_context(device, amp))

    def run():
        with ctx():
            losses = model(data['inputs'], data['data_samples'], mode='loss')
        loss, _ = model.parse_losses(losses)
        optim_wrapper.update_params(loss)
        return loss

    return run
