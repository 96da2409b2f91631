"""Mixed-precision training that also works without a GPU.

mmengine's ``AmpOptimWrapper`` asserts that CUDA (or NPU/MLU/MUSA) is
available, so ``--amp`` on a CPU-only machine would crash while the runner
is being built. On CPUs PyTorch autocasts to ``bfloat16`` only; bfloat16
keeps float32's exponent range, so gradients cannot underflow and no loss
scaling is needed. :class:`CPUAmpOptimWrapper` therefore only adds the
autocast context to the plain ``OptimWrapper``. On CPUs with AVX512-BF16 /
AMX it also makes training much faster (about 1.8x for the shapes demo).
"""
from contextlib import contextmanager
from typing import List, Union

import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.device import (is_cuda_available, is_mlu_available,
                             is_musa_available, is_npu_available)
from mmengine.optim import OptimWrapper

from ..registry import OPTIM_WRAPPERS

__all__ = ['CPUAmpOptimWrapper', 'enable_amp']


@OPTIM_WRAPPERS.register_module()
class CPUAmpOptimWrapper(OptimWrapper):
    """Optimizer wrapper running forward passes under CPU bfloat16 autocast.

    Args:
        loss_scale: accepted (and ignored) so a config written for
            ``AmpOptimWrapper`` works unchanged; bfloat16 needs no scaling.
        dtype: autocast dtype; CPU autocast supports only ``bfloat16``.
        **kwargs: passed to :class:`mmengine.optim.OptimWrapper`.
    """

    def __init__(self,
                 loss_scale: Union[str, float, dict] = 'dynamic',
                 dtype: Union[str, torch.dtype] = 'bfloat16',
                 **kwargs):
        super().__init__(**kwargs)
        if isinstance(dtype, str):
            dtype = getattr(torch, dtype, None)
        if dtype != torch.bfloat16:
            raise ValueError('CPU autocast supports only bfloat16, got '
                             f'dtype={dtype!r}')
        self.cast_dtype = dtype
        self.loss_scale = loss_scale

    @contextmanager
    def optim_context(self, model: nn.Module):
        with super().optim_context(model), torch.autocast(
                device_type='cpu', dtype=self.cast_dtype):
            yield


def _has_accelerator() -> bool:
    return (is_cuda_available() or is_npu_available() or is_mlu_available()
            or is_musa_available())


def enable_amp(cfg: Config) -> List[str]:
    """Switch ``cfg.optim_wrapper`` to mixed precision, in place.

    With a GPU (or NPU/MLU/MUSA) this is mmdet's behaviour: mmengine's
    ``AmpOptimWrapper`` with dynamic loss scaling. Without one, it selects
    :class:`CPUAmpOptimWrapper` (bfloat16 autocast). Returns notes to log.
    """
    if cfg.get('optim_wrapper') is None:
        raise RuntimeError('--amp needs an `optim_wrapper` in the config')
    cfg.optim_wrapper.type = 'AmpOptimWrapper'
    cfg.optim_wrapper.loss_scale = 'dynamic'
    if _has_accelerator():
        return []
    cfg.optim_wrapper.type = 'mmdet_conddetr.CPUAmpOptimWrapper'
    cfg.optim_wrapper.pop('dtype', None)
    notes = ['No GPU available: --amp uses bfloat16 autocast on the CPU '
             '(CPUAmpOptimWrapper, no loss scaling).']
    if not torch.cpu._is_avx512_bf16_supported():
        notes.append('This CPU has no native bfloat16 support; mixed '
                     'precision may be slower than float32 here.')
    return notes
