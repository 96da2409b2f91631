"""Hugging Face ``ConditionalDetrForObjectDetection`` as a test reference.

Three pieces, usable on their own:

* :func:`build_hf_model` builds the transformers model (5.x API) with random
  weights and without touching the network: the ResNet backbone is
  transformers' own ``ResNetBackbone`` built from a ``ResNetConfig``
  (torchvision's v1.5 layout: stride on the 3x3 conv, frozen BN), so neither
  timm nor a checkpoint download is involved.
* :func:`randomize_hf_weights_` replaces every weight *and* every buffer that
  matters (BN statistics, LayerNorm affine, biases) by seeded random values, so
  that a wrong mapping of any tensor shows up in the outputs (the library's
  own init leaves LayerNorm/BN at identity and many biases at zero).
* :func:`hf_to_mmdet_state_dict` renames a transformers state dict to this
  project's layout (``ConditionalDETR`` with an mmdet ``ResNet`` backbone, a
  ``ChannelMapper`` neck and the 80-class ``ConditionalDETRHead``) and says
  which transformers keys every produced key came from.

The mapping is written from the two module trees only (no converter of the
package is used), so the equivalence test checks the package independently.
It covers the layout of a model built by :func:`build_hf_model` (transformers'
``ResNetBackbone``); the Hub checkpoints use a timm backbone, whose keys
(``conv1``, ``layer1.0.bn1`` ...) it does not rename.
"""
import os
import re
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

#: The 80 COCO category ids (1..90 with the ten unused ids removed). The
#: official model, like transformers', has 91 class logits indexed by these
#: ids; this project's head has 80, class ``i`` being ``COCO_CATEGORY_IDS[i]``.
COCO_CATEGORY_IDS: Tuple[int, ...] = tuple(
    i for i in range(1, 91)
    if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83))

#: ResNet stage depths (bottleneck blocks per stage) by network depth.
RESNET_DEPTHS = {50: [3, 4, 6, 3], 101: [3, 4, 23, 3], 152: [3, 8, 36, 3]}

# Query/key projections of transformers' attentions (scaled up at random init).
_QUERY_KEY_PROJECTIONS = ('q_proj', 'k_proj', 'q_content_proj',
                          'k_content_proj', 'q_pos_proj', 'k_pos_proj',
                          'q_pos_sine_proj')

# transformers' attention projection names -> this project's names.
_PROJ_NAMES = {
    'q_content_proj': 'qcontent_proj',
    'q_pos_proj': 'qpos_proj',
    'k_content_proj': 'kcontent_proj',
    'k_pos_proj': 'kpos_proj',
    'q_pos_sine_proj': 'qpos_sine_proj',
    'v_proj': 'v_proj',
    'o_proj': 'out_proj',
}

# Per-layer module renames (transformers -> ours) other than the attentions.
_ENCODER_LAYER_NAMES = {
    'self_attn_layer_norm': 'norm1',
    'final_layer_norm': 'norm2',
    'mlp.fc1': 'ffn.linear1',
    'mlp.fc2': 'ffn.linear2',
}
_DECODER_LAYER_NAMES = {
    'self_attn_layer_norm': 'norm1',
    'encoder_attn_layer_norm': 'norm2',
    'final_layer_norm': 'norm3',
    'mlp.fc1': 'ffn.linear1',
    'mlp.fc2': 'ffn.linear2',
}


def build_hf_model(depth: int = 50,
                   num_queries: int = 300,
                   num_labels: int = 91,
                   auxiliary_loss: bool = False,
                   **config_overrides) -> nn.Module:
    """A randomly initialised ``ConditionalDetrForObjectDetection`` in eval
    mode, architecture as the official R50/R101 model (d=256, 8 heads, 6+6
    layers, FFN 2048).

    ``auxiliary_loss`` stays False by default: with it on, transformers'
    decoder feeds the *layer-normed* output of each layer to the next one
    (see the equivalence test), which the official decoder does not do.
    """
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    from transformers import (ConditionalDetrConfig,
                              ConditionalDetrForObjectDetection, ResNetConfig)
    backbone_config = ResNetConfig(
        depths=RESNET_DEPTHS[depth],
        layer_type='bottleneck',
        downsample_in_bottleneck=False,  # stride on the 3x3 conv (v1.5)
        out_features=['stage4'])
    config = ConditionalDetrConfig(
        backbone_config=backbone_config,
        num_queries=num_queries,
        num_labels=num_labels,
        auxiliary_loss=auxiliary_loss,
        **config_overrides)
    return ConditionalDetrForObjectDetection(config).eval()


def randomize_hf_weights_(model: nn.Module,
                          seed: int = 0,
                          attention_gain: float = 3.0) -> nn.Module:
    """Fill every parameter and buffer of ``model`` with seeded random values
    of sensible scale (in place); returns ``model``.

    Convolutions get a He-normal scale, BN statistics/affine are drawn around
    identity, linear layers are Xavier-uniform (query/key projections times
    ``attention_gain``, for peaked attention) with random biases, LayerNorms
    get random affine parameters, the object queries are standard normal.
    """
    generator = torch.Generator().manual_seed(seed)

    def normal_(tensor: Tensor, std: float, mean: float = 0.0) -> None:
        tensor.copy_(
            torch.randn(tensor.shape, generator=generator) * std + mean)

    def uniform_(tensor: Tensor, low: float, high: float) -> None:
        tensor.copy_(
            torch.rand(tensor.shape, generator=generator) * (high - low) + low)

    with torch.no_grad():
        for name, module in model.named_modules():
            if 'BatchNorm' in type(module).__name__:
                # Small offsets keep the spatial structure of the image alive
                # through 50+ random layers (large ones wash it out).
                uniform_(module.weight, 0.5, 1.0)
                normal_(module.bias, 0.02)
                normal_(module.running_mean, 0.02)
                uniform_(module.running_var, 0.5, 1.5)
            elif isinstance(module, nn.Conv2d):
                fan_out = module.out_channels * module.weight[0, 0].numel()
                normal_(module.weight, (2.0 / fan_out)**0.5)
                if module.bias is not None:
                    normal_(module.bias, 0.02)
            elif isinstance(module, nn.Linear):
                fan_in, fan_out = module.in_features, module.out_features
                bound = (6.0 / (fan_in + fan_out))**0.5
                if name.rsplit('.', 1)[-1] in _QUERY_KEY_PROJECTIONS:
                    # Sharper attention than Xavier gives: with near-uniform
                    # attention every token (and every object query) ends up
                    # with almost the same features, which would hide errors.
                    bound *= attention_gain
                uniform_(module.weight, -bound, bound)
                if module.bias is not None:
                    normal_(module.bias, 0.02)
            elif isinstance(module, nn.LayerNorm):
                normal_(module.weight, 0.1, mean=1.0)
                normal_(module.bias, 0.05)
            elif isinstance(module, nn.Embedding):
                normal_(module.weight, 1.0)
    return model


def _backbone_name(hf_name: str) -> Optional[str]:
    """Our name of a transformers ResNet tensor (``model.backbone.model.``
    prefix removed), or None if it is not one."""
    stem = re.fullmatch(
        r'embedder\.embedder\.(convolution|normalization)\.(\w+)', hf_name)
    if stem:
        module = 'conv1' if stem.group(1) == 'convolution' else 'bn1'
        return f'backbone.{module}.{stem.group(2)}'
    block = re.fullmatch(
        r'encoder\.stages\.(\d+)\.layers\.(\d+)\.'
        r'(?:layer\.(\d)|(shortcut))\.(convolution|normalization)\.(\w+)',
        hf_name)
    if not block:
        return None
    stage, index, conv_index, shortcut, kind, field = block.groups()
    prefix = f'backbone.layer{int(stage) + 1}.{index}'
    if shortcut:
        module = 'downsample.0' if kind == 'convolution' else 'downsample.1'
    else:
        number = int(conv_index) + 1
        module = f'conv{number}' if kind == 'convolution' else f'bn{number}'
    return f'{prefix}.{module}.{field}'


def _layer_module_name(rest: str, renames: Dict[str, str],
                       attentions: Dict[str, str]) -> Optional[str]:
    """Rename ``<module>.<field>`` inside one encoder/decoder layer."""
    for hf_module, our_module in renames.items():
        if rest.startswith(hf_module + '.'):
            return our_module + rest[len(hf_module):]
    match = re.fullmatch(r'(\w+)\.(\w+)\.(weight|bias)', rest)
    if match and match.group(1) in attentions and \
            match.group(2) in _PROJ_NAMES:
        return (f'{attentions[match.group(1)]}.'
                f'{_PROJ_NAMES[match.group(2)]}.{match.group(3)}')
    return None


def hf_to_mmdet_state_dict(
    hf_state: Dict[str, Tensor],
    class_ids: Sequence[int] = COCO_CATEGORY_IDS,
) -> Tuple['OrderedDict[str, Tensor]', Dict[str, List[str]]]:
    """Map a ``ConditionalDetrForObjectDetection`` state dict to ours.

    Args:
        hf_state: The transformers state dict.
        class_ids: For each of our classes, the transformers label index whose
            classifier row it takes (default: the 80 COCO category ids).

    Returns:
        tuple: ``(state_dict, sources)``: our state dict, and for each of its
        keys the transformers keys it was computed from (empty for the BN
        ``num_batches_tracked`` counters, which transformers' frozen BN does
        not have and which are set to 0).

    Raises:
        KeyError: on a transformers key this mapping does not know.
    """
    ours: 'OrderedDict[str, Tensor]' = OrderedDict()
    sources: Dict[str, List[str]] = {}
    encoder_qkv: Dict[Tuple[str, str], Dict[str, str]] = {}

    def put(name: str, value: Tensor, hf_names: List[str]) -> None:
        if name in ours:
            raise KeyError(f'{name} produced twice (from {hf_names})')
        ours[name] = value.clone()
        sources[name] = list(hf_names)

    rows = torch.as_tensor(list(class_ids), dtype=torch.long)
    for hf_name, value in hf_state.items():
        name = None
        if hf_name.startswith('model.backbone.model.'):
            name = _backbone_name(hf_name[len('model.backbone.model.'):])
        elif hf_name.startswith('model.input_projection.'):
            name = 'neck.convs.0.conv.' + hf_name.rsplit('.', 1)[1]
        elif hf_name == 'model.query_position_embeddings.weight':
            name = 'query_embedding.weight'
        elif hf_name.startswith('model.encoder.layers.'):
            index, rest = hf_name[len('model.encoder.layers.'):].split('.', 1)
            fused = re.fullmatch(r'self_attn\.([qkv])_proj\.(weight|bias)',
                                 rest)
            if fused:
                # q, k, v are one fused in-projection in our encoder (rows
                # q | k | v, as PyTorch's MultiheadAttention).
                group = encoder_qkv.setdefault((index, fused.group(2)), {})
                group[fused.group(1)] = hf_name
                continue
            name = _layer_module_name(rest, _ENCODER_LAYER_NAMES,
                                      {'self_attn': 'self_attn'})
            if name is not None:
                name = f'encoder.layers.{index}.{name}'
        elif hf_name.startswith('model.decoder.layers.'):
            index, rest = hf_name[len('model.decoder.layers.'):].split('.', 1)
            name = _layer_module_name(rest, _DECODER_LAYER_NAMES, {
                'self_attn': 'self_attn',
                'encoder_attn': 'cross_attn'
            })
            if name is not None:
                name = f'decoder.layers.{index}.{name}'
        elif hf_name.startswith('model.decoder.layernorm.'):
            name = 'decoder.post_norm.' + hf_name.rsplit('.', 1)[1]
        elif re.fullmatch(
                r'model\.decoder\.(query_scale|ref_point_head)\.layers\.\d+\.'
                r'(weight|bias)', hf_name):
            name = hf_name[len('model.'):]
        elif hf_name.startswith('class_labels_classifier.'):
            put('bbox_head.fc_cls.' + hf_name.rsplit('.', 1)[1],
                value[rows], [hf_name])
            continue
        elif re.fullmatch(r'bbox_predictor\.layers\.\d+\.(weight|bias)',
                          hf_name):
            name = 'bbox_head.fc_reg.' + hf_name[len('bbox_predictor.'):]
        if name is None:
            raise KeyError(f'no mapping for transformers key {hf_name!r}')
        put(name, value, [hf_name])

    for (index, field), group in sorted(encoder_qkv.items()):
        if sorted(group) != ['k', 'q', 'v']:
            raise KeyError(f'encoder layer {index} {field}: incomplete q/k/v '
                           f'projections {sorted(group)}')
        names = [group['q'], group['k'], group['v']]
        put(f'encoder.layers.{index}.self_attn.in_proj.{field}',
            torch.cat([hf_state[n] for n in names]), names)
    # mmdet's BatchNorm2d also has a step counter; frozen BN has none.
    for name in [n for n in ours if n.endswith('.running_var')]:
        counter = name[:-len('running_var')] + 'num_batches_tracked'
        if counter not in ours:
            put(counter, torch.tensor(0, dtype=torch.long), [])
    return ours, sources
