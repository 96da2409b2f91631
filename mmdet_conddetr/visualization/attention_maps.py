"""Spatial attention maps of the conditional cross-attention (paper, Fig. 1).

:func:`collect_attention_maps` runs the detector once with the last decoder
layer's cross-attention recording its softmax weights, and returns, for the
top-scoring detections, the box and each head's attention over the feature
map. :func:`draw_attention_maps` lays them out over the image, one row per
detection and one column per head.
"""
from contextlib import contextmanager
from typing import Dict, Union

import numpy as np
import torch
from mmdet.apis import inference_detector
from torch import nn


@contextmanager
def recording_cross_attention(model: nn.Module, layer: int = -1):
    """Make decoder layer ``layer`` keep its cross-attention weights."""
    attention = model.decoder.layers[layer].cross_attn
    attention.record_attention = True
    try:
        yield attention
    finally:
        attention.record_attention = False
        attention.last_attention = None


@torch.no_grad()
def collect_attention_maps(model: nn.Module,
                           image: Union[str, np.ndarray],
                           num_detections: int = 3) -> Dict:
    """Detections and their per-head attention maps for one image.

    Args:
        model (nn.Module): A ConditionalDETR built by ``init_detector``.
        image (str | np.ndarray): Image path or BGR array.
        num_detections (int): How many top-scoring detections to keep.

    Returns:
        dict: ``bboxes`` [K, 4] xyxy in original pixels, ``scores`` [K],
        ``labels`` [K], ``maps`` [K, heads, h, w] (each head's weights over
        the unpadded feature map, summing to 1), ``image_shape`` (h, w) of
        the network input without padding.
    """
    feature_shape = {}

    def remember_shape(module, inputs, outputs):
        feature_shape['hw'] = outputs[-1].shape[-2:]

    hook = model.neck.register_forward_hook(remember_shape)
    try:
        with recording_cross_attention(model) as attention:
            result = inference_detector(model, image)
            weights = attention.last_attention[0]  # [heads, Q, h*w]
    finally:
        hook.remove()
    instances = result.pred_instances[:num_detections]
    height, width = feature_shape['hw']
    maps = weights[:, instances.query_index].transpose(0, 1)
    return dict(
        bboxes=instances.bboxes.cpu(),
        scores=instances.scores.cpu(),
        labels=instances.labels.cpu(),
        maps=maps.reshape(len(instances), -1, height, width).cpu(),
        image_shape=result.img_shape)


def draw_attention_maps(image_rgb: np.ndarray, detections: Dict,
                        class_names, out_file: str) -> None:
    """Save a figure: per detection, the image with its box, then each
    head's attention map over the image with the same box.

    Args:
        image_rgb (np.ndarray): The original image, RGB, [H, W, 3].
        detections (dict): Output of :func:`collect_attention_maps`.
        class_names (Sequence[str]): Names of the label indices.
        out_file (str): Where to write the PNG.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    maps = detections['maps']
    rows, heads = maps.shape[:2]
    height, width = image_rgb.shape[:2]
    figure, axes = plt.subplots(
        max(rows, 1), heads + 1, figsize=(2.2 * (heads + 1), 2.2 * max(rows, 1)),
        squeeze=False)
    for row in range(rows):
        x0, y0, x1, y1 = detections['bboxes'][row].tolist()
        label = int(detections['labels'][row])
        name = class_names[label] if label < len(class_names) else str(label)
        for column in range(heads + 1):
            axis = axes[row, column]
            axis.imshow(image_rgb)
            if column == 0:
                axis.set_title(f'{name} {float(detections["scores"][row]):.2f}',
                               fontsize=8)
            else:
                resized = torch.nn.functional.interpolate(
                    maps[row, column - 1][None, None].float(),
                    size=(height, width),
                    mode='bilinear',
                    align_corners=False)[0, 0]
                # transparent where a head does not look: the image stays
                # readable under the map
                weight = (resized / resized.max().clamp(min=1e-12)).numpy()
                axis.imshow(weight, cmap='jet', alpha=0.8 * weight)
                axis.set_title(f'head {column}', fontsize=8)
            axis.add_patch(
                Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False,
                          edgecolor='white', linewidth=1.5))
            axis.axis('off')
    figure.suptitle('Conditional cross-attention of the last decoder layer',
                    fontsize=10)
    figure.tight_layout()
    figure.savefig(out_file, dpi=110)
    plt.close(figure)
