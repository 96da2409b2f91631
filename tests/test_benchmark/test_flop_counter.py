"""The FLOP counter the benchmark reports with
(:mod:`mmdet_conddetr.utils.flops`): attention cores, backward and the fused
oneDNN convolutions of the fast backbone path are counted exactly."""
import torch
import torch.nn.functional as F


def test_flop_counter_counts_attention_and_fused_convs():
    from mmdet_conddetr.utils.flops import count_flops
    q = torch.randn(1, 8, 50, 32, requires_grad=True)
    forward = count_flops(lambda: F.scaled_dot_product_attention(q, q, q))
    assert forward.attention == forward.total == 4 * 8 * 50 * 50 * 32
    both = count_flops(
        lambda: F.scaled_dot_product_attention(q, q, q).sum().backward())
    assert both.total == forward.total * 7 // 2  # backward: 2.5x forward
    x = torch.randn(1, 16, 12, 12)
    weight = torch.randn(8, 16, 3, 3)
    plain = count_flops(lambda: F.conv2d(x, weight, padding=1)).total
    assert plain == 2 * 8 * 16 * 9 * 144
    if hasattr(torch.ops.mkldnn, '_convolution_pointwise'):
        with torch.no_grad():
            fused = count_flops(
                lambda: torch.ops.mkldnn._convolution_pointwise(
                    x, weight, None, [1, 1], [1, 1], [1, 1], 1, 'relu', [],
                    None)).total
        assert fused == plain
