"""An optimizer constructor that keeps one parameter group per setting.

mmengine's ``DefaultOptimWrapperConstructor`` turns a ``paramwise_cfg`` (the
official recipe's lower backbone learning rate) into one parameter group per
parameter tensor: ~300 groups for R50 Conditional DETR. The optimizer then
loops over them in Python, and a fused AdamW makes one kernel call per group
instead of one per setting. :class:`MergedGroupsOptimWrapperConstructor` lets
mmengine apply the ``paramwise_cfg`` rules unchanged, then merges the groups
whose settings (``lr``, ``weight_decay``, ...) are equal, in order of first
appearance. The update of every parameter is the same: AdamW treats each
tensor on its own, and the gradient clipping is over all of them.
"""
from typing import Any, Dict, List, Optional, Tuple, Union

from mmengine.optim import DefaultOptimWrapperConstructor
from torch import nn

from mmdet_conddetr.registry import OPTIM_WRAPPER_CONSTRUCTORS


def merge_param_groups(groups: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Parameter groups with equal settings joined into one.

    Args:
        groups (list[dict]): Each with ``params`` (a list of tensors) and
            its settings.

    Returns:
        list[dict]: One group per distinct setting, its parameters in their
        original order; groups ordered by first appearance.
    """
    merged: Dict[Tuple, Dict[str, Any]] = {}
    for group in groups:
        settings = {key: value for key, value in group.items()
                    if key != 'params'}
        key = tuple(sorted((name, repr(value))
                           for name, value in settings.items()))
        if key not in merged:
            merged[key] = dict(params=[], **settings)
        merged[key]['params'].extend(group['params'])
    return list(merged.values())


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class MergedGroupsOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """``DefaultOptimWrapperConstructor`` with one group per setting.

    Configs select it with ``optim_wrapper = dict(constructor=
    'mmdet_conddetr.MergedGroupsOptimWrapperConstructor', paramwise_cfg=...,
    ...)`` (a scoped name, as the configs give their hooks); the other keys
    mean what they mean for mmengine's constructor.
    """

    def add_params(self,
                   params: List[dict],
                   module: nn.Module,
                   prefix: str = '',
                   is_dcn_module: Optional[Union[int, float]] = None) -> None:
        super().add_params(params, module, prefix, is_dcn_module)
        if not prefix:  # the outermost call, after the whole model
            params[:] = merge_param_groups(params)
