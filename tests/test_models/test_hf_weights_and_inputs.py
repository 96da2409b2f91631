"""The comparison with transformers' Conditional DETR starts from the same
weights and the same input: every weight is mapped, the frozen BN acts the
same, and our preprocessing gives the official normalised, padded input.

Setup and the quirks of transformers: :mod:`helpers.hf_equivalence`.
"""
import pytest
import torch

pytest.importorskip('transformers')

from helpers.hf_equivalence import SIZES  # noqa: E402


def test_weight_mapping_is_complete(hf_models):
    """Every key of our state dict is filled from transformers' weights, no
    transformers tensor is left over, and the strict load reports nothing."""
    models = hf_models
    ours_keys = set(models['ours'].state_dict())
    hf_keys = set(models['hf'].state_dict())
    state, sources = models['state'], models['sources']
    assert set(state) == ours_keys
    used = {name for names in sources.values() for name in names}
    assert used == hf_keys, (sorted(hf_keys - used), sorted(used - hf_keys))
    # The only keys without a transformers source are BN step counters.
    unsourced = {name for name, names in sources.items() if not names}
    assert unsourced == {k for k in ours_keys
                         if k.endswith('num_batches_tracked')}
    assert not models['load'].missing_keys
    assert not models['load'].unexpected_keys
    loaded = models['ours'].state_dict()
    for name, value in state.items():
        assert torch.equal(loaded[name], value), name


def test_backbone_bn_matches_frozen_bn(hf_models):
    """mmdet's eval-mode BN and transformers' (= official) FrozenBatchNorm2d
    use the same eps (1e-5), so the mapped statistics act the same."""
    ours = hf_models['ours']
    hf_bn = hf_models['hf'].model.backbone.model.embedder.embedder \
        .normalization
    assert not ours.backbone.training and ours.backbone.bn1.eps == 1e-5
    x = torch.randn(2, 64, 5, 7)
    with torch.no_grad():
        torch.testing.assert_close(
            ours.backbone.bn1(x), hf_bn(x), atol=1e-6, rtol=0)


def test_preprocessing_matches_official_normalisation(hf_batch):
    """Our preprocessor turns the BGR uint8 images into the official input:
    RGB / 255, ImageNet mean/std, zero padding bottom-right."""
    batch = hf_batch
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    inputs = batch['inputs']
    assert inputs.shape[-2:] == (max(h for h, _ in SIZES),
                                 max(w for _, w in SIZES))
    for index, image in enumerate(batch['images']):
        height, width = image.shape[-2:]
        expected = (image.flip(0).float() / 255 - mean) / std
        torch.testing.assert_close(
            inputs[index, :, :height, :width], expected, atol=1e-5, rtol=0)
        padded = inputs[index].clone()
        padded[:, :height, :width] = 0
        assert padded.abs().max() == 0
        sample = batch['samples'][index]
        assert sample.img_shape == (height, width)
        assert sample.batch_input_shape == tuple(inputs.shape[-2:])
