"""Our Conditional DETR equals transformers' ``ConditionalDetrForObject
Detection`` (the official formula where transformers differs) on a padded
batch of two images: encoder memory, reference points, the last layer's
scores and boxes and every intermediate decoder layer; and the agreement
depends on the padding mask.

Setup and the quirks of transformers: :mod:`helpers.hf_equivalence`.
"""
import pytest
import torch

pytest.importorskip('transformers')

from helpers.hf_equivalence import (CLASS_IDS, SIZES, TOL,  # noqa: E402
                                    inverse_sigmoid)


def test_encoder_memory_matches(hf_outputs):
    outputs = hf_outputs
    torch.testing.assert_close(outputs['memory'],
                               outputs['hf_model'].encoder_last_hidden_state,
                               **TOL)


def test_reference_points_match(hf_outputs):
    outputs = hf_outputs
    # transformers returns them [num_queries, batch, 2].
    hf_refs = outputs['hf_model'].reference_points.transpose(0, 1)
    assert outputs['refs'].shape == hf_refs.shape == (len(SIZES), 300, 2)
    torch.testing.assert_close(outputs['refs'], hf_refs, **TOL)


def test_last_layer_scores_and_boxes_match(hf_outputs):
    """Sigmoid class scores (80 COCO classes) and normalised cxcywh boxes of
    all 300 queries of both images."""
    outputs = hf_outputs
    hf_scores = outputs['hf'].logits[..., CLASS_IDS].sigmoid()
    scores = outputs['logits'][-1].sigmoid()
    assert scores.shape == hf_scores.shape == (len(SIZES), 300, 80)
    torch.testing.assert_close(scores, hf_scores, **TOL)
    torch.testing.assert_close(outputs['boxes'][-1], outputs['hf'].pred_boxes,
                               **TOL)


def test_intermediate_layers_match_official_formula(hf_models, hf_outputs):
    """Every decoder layer (the auxiliary outputs): the official intermediate
    is ``norm(output_l)`` of each raw layer output (quirk 1), then the shared
    heads, with the shared reference points."""
    outputs = hf_outputs
    hf = hf_models['hf']
    raw = outputs['hf_layers']
    num_layers = len(hf.model.decoder.layers)
    assert len(raw) == num_layers
    with torch.no_grad():
        normed = torch.stack(
            [hf.model.decoder.layernorm(state) for state in raw])
        refs = outputs['hf_model'].reference_points.transpose(0, 1)
        logits = hf.class_labels_classifier(normed)
        deltas = hf.bbox_predictor(normed)
        centres = deltas[..., :2] + inverse_sigmoid(refs)
        boxes = torch.cat([centres, deltas[..., 2:]], dim=-1).sigmoid()
    # Our reconstruction of transformers' last layer is its own output.
    torch.testing.assert_close(logits[-1], outputs['hf'].logits, **TOL)
    torch.testing.assert_close(boxes[-1], outputs['hf'].pred_boxes, **TOL)
    assert outputs['logits'].shape[0] == num_layers
    torch.testing.assert_close(outputs['hidden'], normed, **TOL)
    torch.testing.assert_close(outputs['logits'].sigmoid(),
                               logits[..., CLASS_IDS].sigmoid(), **TOL)
    torch.testing.assert_close(outputs['boxes'], boxes, **TOL)


def test_padding_mask_matters(hf_models, hf_batch, hf_outputs):
    """Without its pixel_mask transformers' predictions move far beyond the
    tolerance for both (padded) images: the agreement above depends on both
    sides masking the padding the same way."""
    outputs = hf_outputs
    with torch.no_grad():
        unmasked = hf_models['hf'](pixel_values=hf_batch['inputs'])
    scores = outputs['logits'][-1].sigmoid()
    unmasked_scores = unmasked.logits[..., CLASS_IDS].sigmoid()
    for index in range(len(SIZES)):
        assert (scores[index] - unmasked_scores[index]).abs().max() > 1e-3
        assert (outputs['boxes'][-1][index] -
                unmasked.pred_boxes[index]).abs().max() > 1e-3
