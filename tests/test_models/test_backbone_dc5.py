"""``ResNetDC5`` follows torchvision's ``replace_stride_with_dilation``.

The official DC5 models build ``torchvision.models.resnet50/101(
replace_stride_with_dilation=[False, False, True])``. torchvision's
``ResNet._make_layer`` then, for the dilated stage: multiplies the running
dilation by the stage stride and sets the stride to 1; gives the FIRST block
the PREVIOUS dilation (1) with stride 1 and its downsample a stride-1 1x1
conv; gives every later block the new dilation (2). In a Bottleneck only the
3x3 ``conv2`` carries stride and dilation, with padding = dilation.
mmdet's ``ResNet(strides=(1, 2, 2, 1), dilations=(1, 1, 1, 2))`` instead
dilates the first block as well, a different network for the same weights.

The expected values below are generated from that rule, not read from our
code.
"""
import glob
import os
from typing import Dict, List, Tuple

import pytest
import torch
import torch.nn.functional as F
from mmdet.models.backbones import ResNet
from mmengine.config import Config
from mmengine.registry import DefaultScope

import mmdet_conddetr  # noqa: F401
from mmdet_conddetr.models.backbones import ResNetDC5
from mmdet_conddetr.registry import MODELS

REPO_ROOT = os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG_DIR = os.path.join(REPO_ROOT, 'configs/conditional_detr')
BLOCKS = {50: [3, 4, 6, 3], 101: [3, 4, 23, 3]}

# (stride, dilation, padding) of one conv.
ConvSpec = Tuple[int, int, int]


def torchvision_rule(blocks: List[int],
                     replace_stride_with_dilation: List[bool]
                     ) -> Dict[str, ConvSpec]:
    """Stride/dilation/padding of every conv of a torchvision Bottleneck
    ResNet, named as in mmdet (``layer{i}.{j}.conv{k}``, ``downsample.0``).

    Re-states ``torchvision.models.resnet.ResNet._make_layer``: layer1 has
    stride 1, layers 2-4 stride 2 unless replaced by dilation.
    """
    expected = {}
    dilation = 1
    inplanes, expansion = 64, 4
    for stage, num_blocks in enumerate(blocks):
        stride = 1 if stage == 0 else 2
        planes = 64 * 2**stage
        previous_dilation = dilation
        if stage > 0 and replace_stride_with_dilation[stage - 1]:
            dilation *= stride
            stride = 1
        prefix = f'layer{stage + 1}'
        for block in range(num_blocks):
            block_stride = stride if block == 0 else 1
            block_dilation = previous_dilation if block == 0 else dilation
            name = f'{prefix}.{block}'
            expected[f'{name}.conv1'] = (1, 1, 0)
            expected[f'{name}.conv2'] = (block_stride, block_dilation,
                                         block_dilation)
            expected[f'{name}.conv3'] = (1, 1, 0)
            if block == 0 and (stride != 1 or inplanes != planes * expansion):
                expected[f'{name}.downsample.0'] = (stride, 1, 0)
        inplanes = planes * expansion
    return expected


def conv_specs(backbone) -> Dict[str, ConvSpec]:
    specs = {}
    for name, module in backbone.named_modules():
        if isinstance(module, torch.nn.Conv2d) and name.startswith('layer'):
            assert module.stride[0] == module.stride[1], name
            assert module.dilation[0] == module.dilation[1], name
            assert module.padding[0] == module.padding[1], name
            specs[name] = (module.stride[0], module.dilation[0],
                           module.padding[0])
    return specs


def randomize_(backbone, seed: int) -> None:
    """He-normal convs and non-trivial BN statistics (BNs not identities)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in backbone.modules():
            if isinstance(module, torch.nn.Conv2d):
                fan_out = module.out_channels * module.weight[0, 0].numel()
                module.weight.copy_(
                    torch.randn(module.weight.shape, generator=generator) *
                    (2.0 / fan_out)**0.5)
            elif isinstance(module, torch.nn.BatchNorm2d):
                shape = module.weight.shape
                module.weight.copy_(torch.rand(shape, generator=generator) *
                                    0.5 + 0.5)
                module.bias.copy_(torch.randn(shape, generator=generator) *
                                  0.02)
                module.running_mean.copy_(
                    torch.randn(shape, generator=generator) * 0.02)
                module.running_var.copy_(
                    torch.rand(shape, generator=generator) + 0.5)


def build_pair(depth: int):
    """A plain mmdet ResNet with random weights and the DC5 backbone holding
    the same weights (the layouts are identical: strict load)."""
    common = dict(
        depth=depth,
        num_stages=4,
        out_indices=(3, ),
        norm_cfg=dict(type='BN', requires_grad=False),
        norm_eval=True,
        style='pytorch')
    plain = ResNet(**common)
    randomize_(plain, seed=depth)
    dc5 = ResNetDC5(**common)
    dc5.load_state_dict(plain.state_dict(), strict=True)
    # (mmdet's ResNet.train() returns None, so no chaining of eval().)
    plain.eval()
    dc5.eval()
    return plain, dc5


@pytest.fixture(scope='module', params=[50, 101])
def pair(request):
    return (request.param, ) + build_pair(request.param)


def test_conv_geometry_follows_torchvision_rule(pair):
    depth, plain, dc5 = pair
    dc5_expected = torchvision_rule(BLOCKS[depth], [False, False, True])
    plain_expected = torchvision_rule(BLOCKS[depth], [False, False, False])
    # Same set of convs (no conv added or lost), each with the rule's values.
    assert conv_specs(dc5) == dc5_expected
    # Spot checks of the rule itself for the dilated stage.
    assert dc5_expected['layer4.0.conv2'] == (1, 1, 1)
    assert dc5_expected['layer4.0.downsample.0'] == (1, 1, 0)
    assert dc5_expected['layer4.1.conv2'] == dc5_expected[
        'layer4.2.conv2'] == (1, 2, 2)
    # Layers 1-3 (and the stem) are those of the undilated network.
    assert conv_specs(plain) == plain_expected
    for name, spec in plain_expected.items():
        if not name.startswith('layer4'):
            assert dc5_expected[name] == spec, name
    for name in ('conv1', ):
        assert getattr(dc5, name).stride == getattr(plain, name).stride
        assert getattr(dc5, name).padding == getattr(plain, name).padding


def bottleneck_by_hand(block, x: torch.Tensor, spec: Dict[str, ConvSpec],
                       prefix: str) -> torch.Tensor:
    """One mmdet Bottleneck computed with F.conv2d and the given geometry."""

    def conv(name: str, module, inputs):
        stride, dilation, padding = spec[f'{prefix}.{name}']
        return F.conv2d(inputs, module.weight, module.bias, stride=stride,
                        padding=padding, dilation=dilation)

    out = F.relu(block.norm1(conv('conv1', block.conv1, x)))
    out = F.relu(block.norm2(conv('conv2', block.conv2, out)))
    out = block.norm3(conv('conv3', block.conv3, out))
    identity = x
    if block.downsample is not None:
        identity = block.downsample[1](
            conv('downsample.0', block.downsample[0], x))
    return F.relu(out + identity)


def test_forward_equals_hand_dilated_layer4(pair):
    """DC5 output == the plain network's stem..layer3 followed by layer4
    computed by hand with the rule's stride/dilation/padding; output
    stride 16. mmdet's own ``dilations=(1, 1, 1, 2)`` differs."""
    depth, plain, dc5 = pair
    spec = torchvision_rule(BLOCKS[depth], [False, False, True])
    x = torch.randn(1, 3, 96, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        feat = plain.maxpool(plain.relu(plain.norm1(plain.conv1(x))))
        for layer in ('layer1', 'layer2', 'layer3'):
            feat = getattr(plain, layer)(feat)
        for index, block in enumerate(plain.layer4):
            feat = bottleneck_by_hand(block, feat, spec, f'layer4.{index}')
        expected = feat
        out = dc5(x)[0]
        plain_out = plain(x)[0]
    assert out.shape == expected.shape == (1, 2048, 96 // 16, 128 // 16)
    assert plain_out.shape == (1, 2048, 96 // 32, 128 // 32)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)

    # mmdet's plain dilation of the whole stage: same weights, other output.
    mmdet_dilated = ResNet(
        depth=depth,
        num_stages=4,
        out_indices=(3, ),
        strides=(1, 2, 2, 1),
        dilations=(1, 1, 1, 2),
        norm_cfg=dict(type='BN', requires_grad=False),
        norm_eval=True,
        style='pytorch')
    mmdet_dilated.eval()
    mmdet_dilated.load_state_dict(plain.state_dict(), strict=True)
    assert mmdet_dilated.layer4[0].conv2.dilation == (2, 2)
    with torch.no_grad():
        other = mmdet_dilated(x)[0]
    assert other.shape == out.shape
    assert (other - expected).abs().max() > 1e-3


def dc5_configs() -> List[str]:
    return sorted(
        os.path.basename(path)
        for path in glob.glob(os.path.join(CONFIG_DIR, 'dc5_*.py')))


def test_dc5_r50_config_builds_with_resnet_dc5():
    path = os.path.join(CONFIG_DIR, 'dc5_r50_50ep.py')
    if not os.path.exists(path):
        pytest.skip('configs/conditional_detr/dc5_r50_50ep.py not written yet')
    cfg = Config.fromfile(path)
    cfg.model.backbone.init_cfg = None
    with DefaultScope.overwrite_default_scope('mmdet_conddetr'):
        model = MODELS.build(cfg.model)
    assert type(model.backbone) is ResNetDC5
    assert model.backbone.depth == 50
    assert conv_specs(model.backbone) == torchvision_rule(
        BLOCKS[50], [False, False, True])
    # The neck still takes the 2048 channels of layer4.
    assert model.neck.convs[0].conv.in_channels == 2048


@pytest.mark.parametrize('name', dc5_configs() or ['<none>'])
def test_every_dc5_config_uses_resnet_dc5(name):
    if name == '<none>':
        pytest.skip('no dc5_*.py config yet')
    cfg = Config.fromfile(os.path.join(CONFIG_DIR, name))
    backbone_cfg = cfg.model.backbone
    assert backbone_cfg.type == 'ResNetDC5', name
    expected_depth = 101 if '_r101_' in name else 50
    assert backbone_cfg.depth == expected_depth, name
    backbone_cfg.init_cfg = None
    with DefaultScope.overwrite_default_scope('mmdet_conddetr'):
        backbone = MODELS.build(backbone_cfg)
    assert conv_specs(backbone) == torchvision_rule(BLOCKS[expected_depth],
                                                    [False, False, True])
