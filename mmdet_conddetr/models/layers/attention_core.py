"""Scaled dot-product attention over heads, and which kernel computes it.

Every attention of the model computes ``softmax(q k^T / sqrt(D_qk)) v`` per
head, in one of two ways:

* **explicit** (:func:`explicit_attention`): ``matmul -> softmax -> dropout
  -> matmul``; it materialises the [B, H, Nq, Nk] weights and keeps them for
  backward. It is the only way to get the weights (``record_attention``).
* **fused** (:func:`fused_attention`): :func:`torch.nn.functional.
  scaled_dot_product_attention`, which never builds the weights when one of
  torch's fused kernels accepts the inputs.

:func:`select_path` picks one from the device and the inputs, never from a
user setting:

==========================  ========  ====================================
case                        CPU       CUDA
==========================  ========  ====================================
weights requested           explicit  explicit
no attention dropout        fused     fused
attention dropout (train)   explicit  fused if a fused kernel accepts the
                                      inputs (:func:`cuda_kernel_accepts`),
                                      else explicit
==========================  ========  ====================================

Why: torch's CPU flash kernel has no dropout, so on the CPU
``scaled_dot_product_attention`` with ``dropout_p > 0`` falls back to its
math path, which is the explicit computation plus extra passes. On CUDA the
memory-efficient and flash kernels implement dropout and never store the
weights (DC5 at 800x1333, batch 2: 4200 tokens, 1.1 GiB of float32 weights
per encoder layer, kept before and after dropout); the math fallback would
store them too, hence the acceptance check.
"""
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from .dropout import dropout

EXPLICIT = 'explicit'
FUSED = 'fused'
_HALF = (torch.float16, torch.bfloat16)


def split_heads(x: Tensor, num_heads: int) -> Tensor:
    """[B, N, H*D] -> [B, H, N, D] (a view)."""
    batch, length, width = x.shape
    return x.view(batch, length, num_heads, width // num_heads).transpose(1, 2)


def merge_heads(x: Tensor) -> Tensor:
    """[B, H, N, D] -> [B, N, H*D]."""
    batch, heads, length, width = x.shape
    return x.transpose(1, 2).reshape(batch, length, heads * width)


def explicit_attention(q: Tensor,
                       k: Tensor,
                       v: Tensor,
                       key_padding_mask: Optional[Tensor],
                       dropout_p: float,
                       return_weights: bool = False
                       ) -> Union[Tensor, Tuple[Tensor, Tensor]]:
    """``softmax(q k^T / sqrt(D_qk)) v`` step by step.

    Args:
        q (Tensor): Queries, [B, H, Nq, Dqk].
        k (Tensor): Keys, [B, H, Nk, Dqk].
        v (Tensor): Values, [B, H, Nk, Dv].
        key_padding_mask (Tensor, optional): [B, Nk], True on padded keys.
        dropout_p (float): Dropout on the attention weights.
        return_weights (bool): Also return the softmax weights (before
            dropout), [B, H, Nq, Nk].

    Returns:
        Tensor | tuple[Tensor, Tensor]: Output [B, H, Nq, Dv] (and weights).
    """
    logits = torch.matmul(q * q.size(-1)**-0.5, k.transpose(-2, -1))
    if key_padding_mask is not None:
        # In place: the matmul's backward needs its inputs, not its output.
        logits.masked_fill_(key_padding_mask[:, None, None, :], float('-inf'))
    weights = logits.softmax(-1)
    dropped = dropout(weights, dropout_p) if dropout_p > 0 else weights
    out = torch.matmul(dropped, v)
    return (out, weights) if return_weights else out


def fused_attention(q: Tensor, k: Tensor, v: Tensor,
                    key_padding_mask: Optional[Tensor],
                    dropout_p: float) -> Tensor:
    """The same as :func:`explicit_attention` through
    ``scaled_dot_product_attention`` (shapes as there; no weights)."""
    attn_mask = None
    if key_padding_mask is not None:
        attn_mask = ~key_padding_mask[:, None, None, :]
    return F.scaled_dot_product_attention(
        q, k, v, attn_mask=attn_mask, dropout_p=dropout_p)


def cuda_capability(x: Tensor) -> Optional[Tuple[int, int]]:
    """Compute capability of ``x``'s CUDA device, None off CUDA."""
    if x.device.type != 'cuda':
        return None
    return torch.cuda.get_device_capability(x.device)


def _autocast_dtype(x: Tensor) -> torch.dtype:
    """The dtype ``scaled_dot_product_attention`` will see for ``x``
    (CUDA autocast casts float32 inputs to its low-precision dtype)."""
    if (x.dtype == torch.float32 and x.device.type == 'cuda'
            and torch.is_autocast_enabled('cuda')):
        return torch.get_autocast_dtype('cuda')
    return x.dtype


def cuda_kernel_accepts(q: Tensor, k: Tensor, v: Tensor, masked: bool,
                        capability: Tuple[int, int]) -> bool:
    """Whether torch's memory-efficient or flash CUDA kernel takes these
    inputs with dropout and gradients (the rules of torch 2.13's
    ``aten/src/ATen/native/transformers/cuda/sdp_utils.cpp``, dense inputs).

    Memory-efficient: sm50..sm121; any boolean mask; ``Dqk(q) == Dqk(k)``;
    ``Dqk`` and ``Dv`` multiples of the GEMM alignment (8 for half types
    from sm70 on, 4 for float32 from sm80 on, else 1) and, from sm80 on,
    storage offsets aligned to it; float16/float32, bfloat16 from sm80 on.
    Flash: sm80..sm121; no mask; equal head dims of at most 256 (192 when
    training with dropout on sm86-89/sm120-121); float16/bfloat16.
    Both need unit stride in the last dim.

    Args:
        q, k, v (Tensor): As :func:`explicit_attention`.
        masked (bool): Whether a key padding mask is passed.
        capability (tuple[int, int]): The device's compute capability.

    Returns:
        bool: True if a fused kernel runs them (not the math fallback).
    """
    tensors = (q, k, v)
    if any(t.dim() != 4 or t.stride(-1) != 1 or t.numel() == 0
           for t in tensors):
        return False
    dtype = _autocast_dtype(q)
    half = dtype in _HALF
    dq, dk, dv = (t.size(-1) for t in tensors)
    return ((torch.backends.cuda.mem_efficient_sdp_enabled()
             and _mem_efficient_accepts(tensors, dtype, capability))
            or (torch.backends.cuda.flash_sdp_enabled() and half
                and not masked and (8, 0) <= capability <= (12, 1)
                and dq == dk == dv <= _flash_max_head_dim(capability)))


def _flash_max_head_dim(capability: Tuple[int, int]) -> int:
    # Flash's backward with dropout fails above 192 on these GPUs.
    if (8, 6) <= capability <= (8, 9) or (12, 0) <= capability <= (12, 1):
        return 192
    return 256


def _mem_efficient_accepts(tensors: Tuple[Tensor, Tensor, Tensor],
                           dtype: torch.dtype,
                           capability: Tuple[int, int]) -> bool:
    q, k, v = tensors
    major = capability[0]
    if not (5, 0) <= capability <= (12, 1) or q.size(-1) != k.size(-1):
        return False
    if dtype not in ((torch.float16, torch.float32, torch.bfloat16)
                     if major >= 8 else (torch.float16, torch.float32)):
        return False
    half = dtype in _HALF
    alignment = 4 if major >= 8 else 1
    if major >= 8 or (major >= 7 and half):  # tensor cores
        alignment = max(alignment, 8 if half else 4)
    if q.size(-1) % alignment or v.size(-1) % alignment:
        return False
    # From sm80 on the kernel also needs aligned start addresses; a tensor
    # that autocast will cast is a new allocation, hence aligned.
    return major < 8 or all(
        t.dtype != dtype or t.storage_offset() % alignment == 0
        for t in tensors)


def select_path(q: Tensor, k: Tensor, v: Tensor, masked: bool,
                dropout_p: float, need_weights: bool) -> str:
    """:data:`EXPLICIT` or :data:`FUSED` for these inputs (see the module
    docstring's table)."""
    if need_weights:
        return EXPLICIT
    if dropout_p == 0.0:
        return FUSED
    capability = cuda_capability(q)
    if capability is not None and cuda_kernel_accepts(q, k, v, masked,
                                                      capability):
        return FUSED
    return EXPLICIT


def attend(q: Tensor, k: Tensor, v: Tensor,
           key_padding_mask: Optional[Tensor], dropout_p: float) -> Tensor:
    """Attention by the path :func:`select_path` picks (shapes as
    :func:`explicit_attention`; returns [B, H, Nq, Dv])."""
    if select_path(q, k, v, key_padding_mask is not None, dropout_p,
                   False) == FUSED:
        return fused_attention(q, k, v, key_padding_mask, dropout_p)
    return explicit_attention(q, k, v, key_padding_mask, dropout_p)
