"""The fast frozen-BN ResNet path (:mod:`mmdet_conddetr.models.layers.
fast_resnet`, the backbone speed-up the benchmark measures) computes mmdet's
ResNet: same outputs, same gradients."""
import torch


def test_fast_backbone_keeps_outputs_and_gradients():
    """The folded-BN, channels-last, fused backbone path computes mmdet's
    ResNet: same outputs, same gradients, frozen stages stay frozen."""
    from mmdet.models.backbones import ResNet

    from mmdet_conddetr.models.layers.fast_resnet import (resnet_forward,
                                                          supports_fast_resnet)
    torch.manual_seed(0)
    backbone = ResNet(depth=50,
                      out_indices=(3, ),
                      frozen_stages=1,
                      norm_cfg=dict(type='BN', requires_grad=False),
                      norm_eval=True).double()
    for module in backbone.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.5, 2)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.normal_(0, 0.1)
    backbone.train()
    assert supports_fast_resnet(backbone)
    x = torch.randn(1, 3, 64, 96, dtype=torch.float64)
    probe = torch.randn(1, 2048, 2, 3, dtype=torch.float64)

    def run(fast):
        backbone.zero_grad()
        out = resnet_forward(backbone, x)[0] if fast else backbone(x)[0]
        (out * probe).sum().backward()
        return out.detach(), {
            name: p.grad.clone()
            for name, p in backbone.named_parameters() if p.grad is not None
        }

    out_fast, grads_fast = run(True)
    out_ref, grads_ref = run(False)
    assert torch.allclose(out_fast, out_ref, rtol=1e-10, atol=1e-10)
    assert sorted(grads_fast) == sorted(grads_ref)
    assert not any(name.startswith(('conv1', 'layer1')) for name in grads_ref)
    for name, grad in grads_ref.items():
        assert torch.allclose(grads_fast[name], grad, rtol=1e-9, atol=1e-10)
    # float32 inference runs the fused oneDNN kernels: same numbers to
    # float rounding.
    backbone.float().eval()
    with torch.no_grad():
        fast = resnet_forward(backbone, x.float())[0]
        ref = backbone(x.float())[0]
    assert (fast - ref).abs().max() <= 1e-5 * ref.abs().max()
    # A BN in training mode is not an affine map: the module's own forward.
    backbone.norm_eval = False
    backbone.train()
    assert not supports_fast_resnet(backbone)
