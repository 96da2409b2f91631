"""FLOP counting that includes the attention matmuls.

mmengine's and fvcore's counters trace modules and skip the attention cores
(``scaled_dot_product_attention``, ``bmm`` inside ``nn.MultiheadAttention``).
:func:`count_flops` runs a callable under PyTorch's
:class:`torch.utils.flop_counter.FlopCounterMode`, which sees every aten op,
and adds formulas for the ops it does not know about on CPU:

* ``aten._scaled_dot_product_flash_attention_for_cpu`` (and its backward),
  the kernel ``scaled_dot_product_attention`` runs on CPU: ``2 * B * H * Nq *
  Nk * (Dqk + Dv)`` forward, as PyTorch's formula for the CUDA kernels;
* oneDNN's fused ``mkldnn._convolution_pointwise`` (conv + ReLU / + add),
  counted as the convolution it contains.

A multiply-add is 2 FLOPs. Only matmul-like ops are counted (convolutions,
linear layers, attention), as usual; elementwise ops, norms and softmax are
not.
"""
from dataclasses import dataclass, field
from typing import Any, Callable, Dict

import torch
from torch.utils import flop_counter

__all__ = ['FlopReport', 'count_flops', 'ATTENTION_OPS']

aten = torch.ops.aten

#: Op names (aten overload packets, without namespace) counted as attention.
ATTENTION_OPS = ('bmm', 'baddbmm', '_scaled_dot_product_flash_attention',
                 '_scaled_dot_product_flash_attention_backward',
                 '_scaled_dot_product_flash_attention_for_cpu',
                 '_scaled_dot_product_flash_attention_for_cpu_backward',
                 '_scaled_dot_product_efficient_attention',
                 '_scaled_dot_product_efficient_attention_backward',
                 '_scaled_dot_product_cudnn_attention',
                 '_scaled_dot_product_cudnn_attention_backward',
                 '_flash_attention_backward', '_efficient_attention_backward')


def _sdpa_cpu_flops(query_shape,
                    key_shape,
                    value_shape,
                    *args,
                    out_shape=None,
                    **kwargs) -> int:
    return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)


def _sdpa_cpu_backward_flops(grad_out_shape,
                             query_shape,
                             key_shape,
                             value_shape,
                             *args,
                             out_shape=None,
                             **kwargs) -> int:
    return flop_counter.sdpa_backward_flop_count(grad_out_shape, query_shape,
                                                 key_shape, value_shape)


def _pointwise_conv_flops(*args, out_shape=None, **kwargs) -> int:
    # One overload packet, two signatures: ``default`` is (X, W, B, padding,
    # stride, dilation, groups, attr, scalars, algorithm), ``binary`` is (X,
    # other, W, B, padding, ...) with three more trailing arguments.
    x_shape = args[0]
    w_shape = args[2] if len(args) >= 13 else args[1]
    return flop_counter.conv_flop_count(list(x_shape),
                                        list(w_shape),
                                        list(out_shape),
                                        transposed=False)


def _custom_mapping() -> Dict[Any, Callable]:
    mapping = {}
    if hasattr(aten, '_scaled_dot_product_flash_attention_for_cpu'):
        mapping[aten._scaled_dot_product_flash_attention_for_cpu] = (
            _sdpa_cpu_flops)
        mapping[aten._scaled_dot_product_flash_attention_for_cpu_backward] = (
            _sdpa_cpu_backward_flops)
    mkldnn = getattr(torch.ops, 'mkldnn', None)
    if mkldnn is not None and hasattr(mkldnn, '_convolution_pointwise'):
        mapping[mkldnn._convolution_pointwise] = _pointwise_conv_flops
    return mapping


@dataclass
class FlopReport:
    """FLOPs of one call.

    Attributes:
        total: All counted FLOPs.
        attention: FLOPs of the attention cores (:data:`ATTENTION_OPS`).
        by_op: FLOPs per aten op name.
    """
    total: int
    attention: int
    by_op: Dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> Dict[str, Any]:
        return dict(total=self.total,
                    attention=self.attention,
                    by_op=self.by_op)


def count_flops(fn: Callable[[], Any]) -> FlopReport:
    """Run ``fn()`` once and count its FLOPs, attention included.

    Works for forward-only calls and for calls that also run ``backward``.
    """
    counter = flop_counter.FlopCounterMode(display=False,
                                           custom_mapping=_custom_mapping())
    with counter:
        fn()
    by_op: Dict[str, int] = {}
    for op, flops in counter.get_flop_counts().get('Global', {}).items():
        name = getattr(op, '__name__', str(op)).split('.')[-1]
        by_op[name] = by_op.get(name, 0) + int(flops)
    attention = sum(v for k, v in by_op.items() if k in ATTENTION_OPS)
    return FlopReport(total=sum(by_op.values()),
                      attention=attention,
                      by_op=by_op)
