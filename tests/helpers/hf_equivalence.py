"""The shared setup of the equivalence tests with transformers'
``ConditionalDetrForObjectDetection`` (``tests/test_models/test_hf_*.py``).

transformers' Conditional DETR is an implementation independent of ours; its
random weights are renamed to our layout by a mapping written for these tests
(``helpers/hf_reference.py``, not the package's converter) and both models run
in eval mode on the same padded batch of two images of different sizes.

Where transformers differs from the official code (Atten4Vis/ConditionalDETR,
``models/transformer.py``, ``models/backbone.py``), the tests use the official
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

The fixtures (``hf_models``, ``hf_batch``, ``hf_outputs``) are in
``tests/test_models/conftest.py``; they call the builders here.
"""
import os

import torch
import torch.nn.functional as F
from mmdet.structures import DetDataSample
from mmengine.config import Config
from mmengine.registry import DefaultScope

import mmdet_conddetr  # noqa: F401  (registers the modules)
from helpers.hf_reference import (COCO_CATEGORY_IDS, build_hf_model,
                                  hf_to_mmdet_state_dict,
                                  randomize_hf_weights_)
from mmdet_conddetr.registry import MODELS

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


def build_models() -> dict:
    """transformers' model with seeded random weights and ours with the same
    weights: dict(hf, ours, state, sources, load)."""
    torch.manual_seed(0)
    hf = randomize_hf_weights_(build_hf_model(num_queries=300), seed=0)
    ours = build_ours()
    state, sources = hf_to_mmdet_state_dict(hf.state_dict())
    return dict(hf=hf, ours=ours, state=state, sources=sources,
                load=ours.load_state_dict(state, strict=True))


def build_batch(models: dict) -> dict:
    """The padded batch of two ``SIZES`` images: dict(images, inputs,
    samples, pixel_mask)."""
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


def run_both(models: dict, batch: dict) -> dict:
    """Both models on ``batch``, with the intermediate results the tests
    compare (captured by forward hooks)."""
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
