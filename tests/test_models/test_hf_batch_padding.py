"""Padding in a batch: the backbone leaks across the padding border (as the
official model's does), and given the same backbone features, ``predict`` of
each image alone equals its prediction in a batch with an image of another
size. Ours carries the weights mapped from transformers' random model.

Setup: :mod:`helpers.hf_equivalence`.
"""
from unittest import mock

import pytest
import torch

pytest.importorskip('transformers')

from helpers.hf_equivalence import (BATCH_SIZES, TOL,  # noqa: E402
                                    preprocess, structured_image)


def test_backbone_leaks_across_the_padding_border(hf_models):
    """Why the next test swaps in the features of the image alone: a CNN is
    not padding invariant, in the official model as in ours. A feature cell
    just outside the image sees image pixels through its (7x7, 3x3) kernel and
    is non-zero, while with the image alone that cell is the next conv's zero
    padding; the image's border features then differ. Not a bug: the official
    ``nested_tensor_from_tensor_list`` pads the same way."""
    model = hf_models['ours']
    generator = torch.Generator().manual_seed(2)
    images = [structured_image(h, w, generator) for h, w in BATCH_SIZES]
    with torch.no_grad():
        alone = model.extract_feat(preprocess(model, images[:1])['inputs'])[0]
        batched = model.extract_feat(preprocess(model, images)['inputs'])[0]
    height, width = alone.shape[-2:]
    assert (batched[0, :, :height, :width] - alone[0]).abs().max() > 1e-3


def assert_same_detections(found, reference, scale) -> None:
    """Every detection of ``found`` is in ``reference``: same label, score
    and box (normalised by the image size) within ``TOL``. Matched as sets:
    two queries with the same label and an equal score may come out of the
    top-k in either order."""
    atol = TOL['atol']
    for score, label, box in zip(found.scores, found.labels, found.bboxes):
        same = (reference.labels == label) & (
            (reference.scores - score).abs() <= atol)
        assert same.any(), (float(score), int(label))
        distance = ((reference.bboxes[same] - box) / scale).abs().amax(-1)
        assert distance.min() <= atol, (float(score), int(label),
                                        float(distance.min()))


def test_batched_prediction_equals_one_by_one(hf_models):
    """``predict`` of each image alone equals its prediction in a batch with
    an image of another size, given the same backbone features for the image
    (see the previous test): the padding masks (built from ``img_shape`` and
    ``batch_input_shape`` and downsampled), the normalised sine positions, the
    key masking of the encoder and the decoder and the rescaling of the boxes
    must make the padding invisible. The padded cells get random features, so
    any attention to them shows. The padded size is a multiple of 32, so the
    nearest-neighbour downsampled mask covers exactly the image's own feature
    cells (as in the official code)."""
    model = hf_models['ours']
    generator = torch.Generator().manual_seed(2)
    images = [structured_image(h, w, generator) for h, w in BATCH_SIZES]
    batch = preprocess(model, images)
    with torch.no_grad():
        alone_data = [preprocess(model, [image]) for image in images]
        alone_feats = [
            model.extract_feat(data['inputs'])[0] for data in alone_data
        ]
        alone_pred = [model(**data, mode='predict')[0] for data in alone_data]
        alone_raw = [model(**data, mode='tensor') for data in alone_data]
        channels = alone_feats[0].shape[1]
        full_h, full_w = alone_feats[1].shape[-2:]
        feats = torch.randn((2, channels, full_h, full_w),
                            generator=generator) * 3
        for index, feat in enumerate(alone_feats):
            height, width = feat.shape[-2:]
            feats[index, :, :height, :width] = feat[0]
        with mock.patch.object(model, 'extract_feat', return_value=(feats, )):
            batched_pred = model(**batch, mode='predict')
            batched_raw = model(**batch, mode='tensor')
    assert alone_feats[0].shape[-2:] == (5, 7)  # 160x200 at stride 32
    for index, (height, width) in enumerate(BATCH_SIZES):
        alone = alone_pred[index].pred_instances
        together = batched_pred[index].pred_instances
        assert len(alone.scores) == len(together.scores) == 100
        torch.testing.assert_close(alone.scores, together.scores, **TOL)
        scale = torch.tensor([width, height, width, height])
        assert_same_detections(alone, together, scale)
        assert_same_detections(together, alone, scale)
        # And every query of every decoder layer before the top-k.
        torch.testing.assert_close(alone_raw[index][0][:, 0].sigmoid(),
                                   batched_raw[0][:, index].sigmoid(), **TOL)
        torch.testing.assert_close(alone_raw[index][1][:, 0],
                                   batched_raw[1][:, index], **TOL)
