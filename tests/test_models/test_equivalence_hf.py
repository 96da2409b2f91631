"""Equivalence with transformers' ``ConditionalDetrForObjectDetection``.

transformers' Conditional DETR is an implementation independent of ours; its
random weights are renamed to our layout by a mapping written for this test
(``helpers/hf_reference.py``, not the package's converter) and both models run
in eval mode on the same padded batch of two images of different sizes.

Where transformers differs from the official code (Atten4Vis/ConditionalDETR,
``models/transformer.py``, ``models/backbone.py``), the test uses the official
formula instead of transformers' output. Quirks found (transformers 5.x,
``models/conditional_detr/modeling_conditional_detr.py``):

1. ``auxiliary_loss=True`` changes the forward pass: ``ConditionalDetrDecoder``
   then *replaces* each layer's output by ``layernorm(output)`` before feeding
   it to the next layer (and to ``query_scale``), and the last output is
   layer-normed twice. The official ``TransformerDecoder.forward`` only appends
   ``self.norm(output)`` to ``intermediate`` and keeps the un-normed
   ``output``.
   Handled: transformers runs with ``auxiliary_loss=False`` (its default; the
   last layer is then official) and the intermediate layers are computed by
   the official formula ``norm(output_l)`` from the raw per-layer outputs
   (forward hooks on its decoder layers) with transformers' own norm and
   heads. (Its ``output_hidden_states`` cannot be used for that: the last
   entry is overwritten by the already normed ``last_hidden_state``.)
2. 91 class logits indexed by COCO category id (as the official COCO model)
   versus our 80 classes: rows are compared through ``COCO_CATEGORY_IDS``.
3. Training-only differences, invisible in eval mode and not tested here:
   dropout on the encoder input (not in the official encoder), attention
   dropout 0.0 by default (official 0.1), and with a transformers
   ``ResNetConfig`` backbone *all* backbone weights are frozen (its name filter
   looks for ``"stage.1"`` but the parameters are named ``stages.1``; the
   official code trains layer2-4).

No difference was found in the sine position embedding (normalised, 2*pi,
eps 1e-6, [y, x] order), the frozen BN (eps 1e-5, as mmdet's BN), the
post-norm layer order, the first-layer query position in the cross-attention,
``query_scale`` (identity on the first layer), the query sine embedding
(128 features per coordinate, [y, x]) or the box parametrisation.
"""
import os
from unittest import mock

import pytest
import torch
import torch.nn.functional as F
from mmdet.structures import DetDataSample
from mmengine.config import Config
from mmengine.registry import DefaultScope

os.environ.setdefault('HF_HUB_OFFLINE', '1')
pytest.importorskip('transformers')

import mmdet_conddetr  # noqa: E402,F401
from helpers.hf_reference import (COCO_CATEGORY_IDS,  # noqa: E402
                                  build_hf_model, hf_to_mmdet_state_dict,
                                  randomize_hf_weights_)
from mmdet_conddetr.registry import MODELS  # noqa: E402

REPO_ROOT = os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(REPO_ROOT, 'configs/conditional_detr/r50_50ep.py')
TOL = dict(atol=1e-4, rtol=0)
CLASS_IDS = torch.tensor(COCO_CATEGORY_IDS)
# Two sizes, each padded along a different axis in the (224, 256) batch.
SIZES = [(160, 256), (224, 200)]
# Batched-versus-alone test: a small image with a larger one whose size (the
# padded size) is a multiple of the stride 32.
BATCH_SIZES = [(160, 200), (224, 256)]


def build_ours() -> torch.nn.Module:
    cfg = Config.fromfile(CONFIG)
    cfg.model.backbone.init_cfg = None
    with DefaultScope.overwrite_default_scope('mmdet_conddetr'):
        model = MODELS.build(cfg.model)
    return model.eval()


def structured_image(height: int, width: int,
                     generator: torch.Generator) -> torch.Tensor:
    """uint8 BGR image [3, H, W]: smooth colour field, flat rectangles and a
    little noise (white noise alone is washed out by a random ResNet)."""
    low = torch.rand((1, 3, height // 16 + 2, width // 16 + 2),
                     generator=generator)
    image = F.interpolate(
        low, size=(height, width), mode='bilinear', align_corners=False)[0]
    image = image * 200
    for _ in range(4):
        top = int(torch.randint(0, height - 16, (1, ), generator=generator))
        left = int(torch.randint(0, width - 16, (1, ), generator=generator))
        size_h = int(torch.randint(8, height // 2, (1, ), generator=generator))
        size_w = int(torch.randint(8, width // 2, (1, ), generator=generator))
        colour = torch.rand((3, 1, 1), generator=generator) * 255
        image[:, top:top + size_h, left:left + size_w] = colour
    image = image + torch.rand(image.shape, generator=generator) * 30
    return image.clamp(0, 255).to(torch.uint8)


def preprocess(model, images):
    """Our data preprocessor on uint8 BGR images, metainfo as the test
    pipeline sets it (no resize)."""
    samples = [
        DetDataSample(
            metainfo=dict(
                img_shape=tuple(image.shape[-2:]),
                ori_shape=tuple(image.shape[-2:]),
                scale_factor=(1.0, 1.0))) for image in images
    ]
    return model.data_preprocessor(
        dict(inputs=list(images), data_samples=samples), False)


def inverse_sigmoid(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """``util.misc.inverse_sigmoid`` of the official repository."""
    x = x.clamp(min=0, max=1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))


@pytest.fixture(scope='module')
def models():
    torch.manual_seed(0)
    hf = randomize_hf_weights_(build_hf_model(num_queries=300), seed=0)
    ours = build_ours()
    state, sources = hf_to_mmdet_state_dict(hf.state_dict())
    return dict(hf=hf, ours=ours, state=state, sources=sources,
                load=ours.load_state_dict(state, strict=True))


@pytest.fixture(scope='module')
def batch(models):
    generator = torch.Generator().manual_seed(1)
    images = [structured_image(h, w, generator) for h, w in SIZES]
    data = preprocess(models['ours'], images)
    inputs = data['inputs']
    # transformers' pixel_mask: 1 on real pixels, 0 on padding, from the
    # known image sizes (not from our metainfo).
    pixel_mask = torch.zeros(inputs.shape[0], *inputs.shape[-2:],
                             dtype=torch.long)
    for index, (height, width) in enumerate(SIZES):
        pixel_mask[index, :height, :width] = 1
    return dict(images=images, inputs=inputs, samples=data['data_samples'],
                pixel_mask=pixel_mask)


@pytest.fixture(scope='module')
def outputs(models, batch):
    hf, ours = models['hf'], models['ours']
    captured = {'hf_layers': []}
    # The raw output of every transformers decoder layer, before the final
    # norm (its ``output_hidden_states`` cannot give them: the last entry is
    # replaced by the normed ``last_hidden_state``).
    hooks = [
        layer.register_forward_hook(
            lambda module, args, out: captured['hf_layers'].append(out))
        for layer in hf.model.decoder.layers
    ]
    hooks += [
        hf.model.register_forward_hook(
            lambda module, args, out: captured.update(hf_model=out)),
        ours.encoder.register_forward_hook(
            lambda module, args, out: captured.update(memory=out)),
        ours.decoder.register_forward_hook(
            lambda module, args, out: captured.update(decoder=out)),
    ]
    try:
        with torch.no_grad():
            hf_out = hf(
                pixel_values=batch['inputs'], pixel_mask=batch['pixel_mask'])
            logits, boxes = ours(batch['inputs'], batch['samples'],
                                 mode='tensor')
    finally:
        for hook in hooks:
            hook.remove()
    return dict(hf=hf_out, hf_model=captured['hf_model'],
                hf_layers=captured['hf_layers'], logits=logits,
                boxes=boxes, memory=captured['memory'],
                hidden=captured['decoder'][0], refs=captured['decoder'][1])


def test_weight_mapping_is_complete(models):
    """Every key of our state dict is filled from transformers' weights, no
    transformers tensor is left over, and the strict load reports nothing."""
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


def test_backbone_bn_matches_frozen_bn(models):
    """mmdet's eval-mode BN and transformers' (= official) FrozenBatchNorm2d
    use the same eps (1e-5), so the mapped statistics act the same."""
    ours = models['ours']
    hf_bn = models['hf'].model.backbone.model.embedder.embedder.normalization
    assert not ours.backbone.training and ours.backbone.bn1.eps == 1e-5
    x = torch.randn(2, 64, 5, 7)
    with torch.no_grad():
        torch.testing.assert_close(
            ours.backbone.bn1(x), hf_bn(x), atol=1e-6, rtol=0)


def test_preprocessing_matches_official_normalisation(batch):
    """Our preprocessor turns the BGR uint8 images into the official input:
    RGB / 255, ImageNet mean/std, zero padding bottom-right."""
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


def test_encoder_memory_matches(outputs):
    torch.testing.assert_close(outputs['memory'],
                               outputs['hf_model'].encoder_last_hidden_state,
                               **TOL)


def test_reference_points_match(outputs):
    # transformers returns them [num_queries, batch, 2].
    hf_refs = outputs['hf_model'].reference_points.transpose(0, 1)
    assert outputs['refs'].shape == hf_refs.shape == (len(SIZES), 300, 2)
    torch.testing.assert_close(outputs['refs'], hf_refs, **TOL)


def test_last_layer_scores_and_boxes_match(outputs):
    """Sigmoid class scores (80 COCO classes) and normalised cxcywh boxes of
    all 300 queries of both images."""
    hf_scores = outputs['hf'].logits[..., CLASS_IDS].sigmoid()
    scores = outputs['logits'][-1].sigmoid()
    assert scores.shape == hf_scores.shape == (len(SIZES), 300, 80)
    torch.testing.assert_close(scores, hf_scores, **TOL)
    torch.testing.assert_close(outputs['boxes'][-1], outputs['hf'].pred_boxes,
                               **TOL)


def test_intermediate_layers_match_official_formula(models, outputs):
    """Every decoder layer (the auxiliary outputs): the official intermediate
    is ``norm(output_l)`` of each raw layer output (quirk 1), then the shared
    heads, with the shared reference points."""
    hf = models['hf']
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


def test_padding_mask_matters(models, batch, outputs):
    """Without its pixel_mask transformers' predictions move far beyond the
    tolerance for both (padded) images: the agreement above depends on both
    sides masking the padding the same way."""
    with torch.no_grad():
        unmasked = models['hf'](pixel_values=batch['inputs'])
    scores = outputs['logits'][-1].sigmoid()
    unmasked_scores = unmasked.logits[..., CLASS_IDS].sigmoid()
    for index in range(len(SIZES)):
        assert (scores[index] - unmasked_scores[index]).abs().max() > 1e-3
        assert (outputs['boxes'][-1][index] -
                unmasked.pred_boxes[index]).abs().max() > 1e-3


def test_backbone_leaks_across_the_padding_border(models):
    """Why the next test swaps in the features of the image alone: a CNN is
    not padding invariant, in the official model as in ours. A feature cell
    just outside the image sees image pixels through its (7x7, 3x3) kernel and
    is non-zero, while with the image alone that cell is the next conv's zero
    padding; the image's border features then differ. Not a bug: the official
    ``nested_tensor_from_tensor_list`` pads the same way."""
    model = models['ours']
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


def test_batched_prediction_equals_one_by_one(models):
    """``predict`` of each image alone equals its prediction in a batch with
    an image of another size, given the same backbone features for the image
    (see the previous test): the padding masks (built from ``img_shape`` and
    ``batch_input_shape`` and downsampled), the normalised sine positions, the
    key masking of the encoder and the decoder and the rescaling of the boxes
    must make the padding invisible. The padded cells get random features, so
    any attention to them shows. The padded size is a multiple of 32, so the
    nearest-neighbour downsampled mask covers exactly the image's own feature
    cells (as in the official code)."""
    model = models['ours']
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
