"""TF32 matmuls for float32 runs on Ampere or newer GPUs.

PyTorch computes float32 matmuls in full IEEE float32 by default (its
convolutions already use TF32). On GPUs of compute capability 8.0 or newer,
TF32 tensor cores multiply with a 10-bit mantissa and accumulate in float32,
which is faster for the linears and attention matmuls of the transformer.
This only matters for float32 runs: under ``--amp`` those matmuls run in
float16 anyway.

The base config registers :class:`TF32Hook` in ``default_hooks`` (so every
runner entry point gets it and a config that sets other default hooks keeps
it); switch it off with ``--cfg-options default_hooks.tf32.allow_tf32=False``.
"""
from typing import Optional

import torch
from mmengine.hooks import Hook

from mmdet_conddetr.registry import HOOKS

__all__ = ['TF32Hook', 'set_tf32_matmul']


def set_tf32_matmul(allow: bool) -> Optional[str]:
    """Allow (or forbid) TF32 for float32 matmuls on an Ampere+ GPU.

    Args:
        allow (bool): TF32 if True, IEEE float32 (PyTorch's default) if
            False.

    Returns:
        str | None: The precision set (``'tf32'`` or ``'ieee'``), or None
        when there is no CUDA device of compute capability 8.0 or newer
        (nothing is changed then).
    """
    if not torch.cuda.is_available():
        return None
    if torch.cuda.get_device_capability() < (8, 0):
        return None
    # The CUDA-only switch: torch.set_float32_matmul_precision would also
    # change the CPU (oneDNN) matmuls, and this setter keeps the legacy and
    # the new (fp32_precision) flags readable.
    torch.backends.cuda.matmul.allow_tf32 = allow
    return 'tf32' if allow else 'ieee'


@HOOKS.register_module()
class TF32Hook(Hook):
    """Apply :func:`set_tf32_matmul` before the run starts.

    Args:
        allow_tf32 (bool): Allow TF32 matmuls. Defaults to True.
    """
    priority = 'VERY_HIGH'

    def __init__(self, allow_tf32: bool = True):
        self.allow_tf32 = allow_tf32

    def before_run(self, runner) -> None:
        precision = set_tf32_matmul(self.allow_tf32)
        if precision is not None:
            runner.logger.info(f'float32 matmul precision: {precision} '
                               '(default_hooks.tf32.allow_tf32='
                               f'{self.allow_tf32})')
