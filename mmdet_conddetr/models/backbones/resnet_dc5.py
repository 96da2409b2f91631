"""ResNet whose last stage is dilated the torchvision way (the "DC5" models).

torchvision's ``replace_stride_with_dilation=[False, False, True]``, which the
official DC5 models use, keeps stride 1 *and dilation 1* in the first block of
``layer4`` and dilates the following blocks by 2. mmdet's ``ResNet`` with
``dilations=(1, 1, 1, 2)`` dilates every block of the stage, including the
first, so the pretrained DC5 weights would see a different receptive field.
This class builds mmdet's ResNet and undoes the dilation of that one conv.
"""
from mmdet.models.backbones import ResNet
from mmdet.models.backbones.resnet import Bottleneck

from mmdet_conddetr.registry import MODELS


@MODELS.register_module()
class ResNetDC5(ResNet):
    """mmdet ``ResNet`` with the last stage dilated as torchvision does.

    Args:
        *args: Arguments of mmdet's ``ResNet``; ``strides`` and ``dilations``
            default to the DC5 setting ``(1, 2, 2, 1)`` / ``(1, 1, 1, 2)``.
        **kwargs: Keyword arguments of mmdet's ``ResNet``.
    """

    def __init__(self,
                 *args,
                 strides=(1, 2, 2, 1),
                 dilations=(1, 1, 1, 2),
                 **kwargs):
        if kwargs.get('num_stages', 4) != 4 or dilations[-1] == 1:
            raise ValueError(
                'ResNetDC5 dilates the 4th stage: use num_stages=4 and a '
                f'dilation > 1 for it (got dilations={dilations}); use '
                "type='ResNet' for an undilated backbone.")
        super().__init__(*args, strides=strides, dilations=dilations, **kwargs)
        if self.block is not Bottleneck:
            raise ValueError(
                f'ResNetDC5 needs a Bottleneck ResNet (depth 50/101/152), got '
                f'depth={self.depth}; torchvision has no dilated BasicBlock.')
        last_stage = getattr(self, self.res_layers[-1])
        first_block = last_stage[0]
        # torchvision gives the first block of a dilated stage the previous
        # stage's dilation, not the new one.
        previous = dilations[-2]
        conv = first_block.conv2
        conv.dilation = (previous, previous)
        conv.padding = (previous, previous)
        first_block.dilation = previous
