"""Both detectors from the same architecture settings, with the same weights,
and the batches they are timed on.

mmdet's model is initialised (mmdet's init, plus random BN statistics and
biases so that nothing is trivially zero or one); its state dict is converted
with ``convert_state_dict(source='mmdet')`` and loaded strictly into ours.
"""
import logging
import warnings
from typing import Any, Dict, Optional, Sequence, Tuple

import torch
from torch import nn

from .settings import MMDET, MMDET_CONFIG, OURS, OURS_CONFIG


def quiet_mmengine() -> None:
    """Only errors from mmengine's logger and no warnings: the benchmark
    prints its own progress."""
    from mmengine.logging import MMLogger
    logger = MMLogger.get_instance('benchmark', log_level='ERROR')
    logger.setLevel(logging.ERROR)
    warnings.filterwarnings('ignore')


def _arch_overrides(arch: Dict[str, int], which: str) -> Dict[str, Any]:
    """``merge_from_dict`` keys that set ``arch`` in either config."""
    channels = 2048 if arch['depth'] >= 50 else 512
    common = {
        'model.num_queries': arch['num_queries'],
        'model.backbone.depth': arch['depth'],
        'model.backbone.init_cfg': None,
        'model.neck.in_channels': [channels],
        'model.encoder.num_layers': arch['enc_layers'],
        'model.decoder.num_layers': arch['dec_layers'],
    }
    # mmdet's layers nest the FFN width one level deeper than ours.
    ffn_key = ('feedforward_dims'
               if which == OURS else 'ffn_cfg.feedforward_channels')
    for coder in ('encoder', 'decoder'):
        common[f'model.{coder}.layer_cfg.{ffn_key}'] = arch['ffn']
    return common


def load_config(which: str,
                arch: Dict[str, int],
                config: Optional[str] = None):
    """The config of ``which`` (``'ours'``/``'mmdet'``) set to ``arch``.

    ``package::path`` names go through ``mmengine.hub.get_config``, plain
    paths through ``Config.fromfile``.
    """
    import mmdet_conddetr  # noqa: F401  (resolves mmdet_conddetr:: paths)
    from mmengine.config import Config
    from mmengine.hub import get_config
    path = config or (OURS_CONFIG if which == OURS else MMDET_CONFIG)
    cfg = get_config(path) if '::' in path else Config.fromfile(path)
    cfg.merge_from_dict(_arch_overrides(arch, which))
    return cfg


def build_model(which: str,
                arch: Dict[str, int],
                device: str = 'cpu',
                config: Optional[str] = None,
                init: bool = True) -> nn.Module:
    """Our or mmdet's Conditional DETR, no pretrained weights; the config
    it was built from is kept as ``model.benchmark_cfg``."""
    quiet_mmengine()
    from mmengine.registry import DefaultScope
    cfg = load_config(which, arch, config)
    if which == OURS:
        from mmdet_conddetr.registry import MODELS
        scope = 'mmdet_conddetr'
    else:
        from mmdet.registry import MODELS
        scope = 'mmdet'
    with DefaultScope.overwrite_default_scope(scope):
        model = MODELS.build(cfg.model)
    if init:
        model.init_weights()
    model.benchmark_cfg = cfg
    return model.to(device)


def randomize_weights_(model: nn.Module, seed: int = 0) -> None:
    """Random BN statistics/affines and biases on top of the init, so the
    BN folding and every bias are exercised by the output check."""
    generator = torch.Generator().manual_seed(seed)

    def fill(tensor, kind, a, b):
        values = torch.empty(tensor.shape)
        if kind == 'uniform':
            values.uniform_(a, b, generator=generator)
        else:
            values.normal_(a, b, generator=generator)
        tensor.copy_(values)

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                fill(module.weight, 'uniform', 0.5, 1.5)
                fill(module.bias, 'normal', 0.0, 0.1)
                fill(module.running_mean, 'normal', 0.0, 0.1)
                fill(module.running_var, 'uniform', 0.5, 2.0)
        for name, param in model.named_parameters():
            if name.endswith('bias') and not name.startswith('backbone.'):
                fill(param, 'normal', 0.0, 0.02)


def build_pair(arch: Dict[str, int],
               device: str = 'cpu',
               seed: int = 0,
               config: Optional[str] = None,
               mmdet_config: Optional[str] = None):
    """(ours, mmdet) with the same weights, and how they were converted."""
    from mmdet_conddetr.checkpoint import convert_state_dict
    torch.manual_seed(seed)
    theirs = build_model(MMDET, arch, 'cpu', mmdet_config)
    randomize_weights_(theirs, seed)
    ours = build_model(OURS, arch, 'cpu', config, init=False)
    state = convert_state_dict(theirs.state_dict(), source='mmdet')
    ours.load_state_dict(state, strict=True)
    info = dict(converter='mmdet_conddetr.checkpoint.convert_state_dict('
                "source='mmdet')",
                num_tensors=len(state),
                num_parameters=sum(p.numel() for p in ours.parameters()))
    return ours.to(device), theirs.to(device), info


def make_data(model: nn.Module,
              sizes: Sequence[Tuple[int, int]],
              num_boxes: Optional[Sequence[int]] = None,
              training: bool = False,
              seed: int = 0) -> Dict[str, Any]:
    """Random uint8 images (and ground truths) through the model's own data
    preprocessor: normalised, padded batch and data samples."""
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    generator = torch.Generator().manual_seed(seed)
    images, samples = [], []
    for index, (height, width) in enumerate(sizes):
        images.append(
            torch.randint(0,
                          256, (3, height, width),
                          generator=generator,
                          dtype=torch.uint8))
        sample = DetDataSample(metainfo=dict(img_shape=(height, width),
                                             ori_shape=(height, width),
                                             scale_factor=(1.0, 1.0)))
        if num_boxes is not None:
            count = num_boxes[index]
            size = torch.tensor([width, height], dtype=torch.float32)
            centre = torch.rand(count, 2, generator=generator) * size
            extent = (0.05 +
                      0.4 * torch.rand(count, 2, generator=generator)) * size
            top_left = (centre - extent / 2).clamp(min=0)
            bottom_right = torch.minimum(centre + extent / 2, size)
            sample.gt_instances = InstanceData(
                bboxes=torch.cat([top_left, bottom_right], dim=1),
                labels=torch.randint(0, 80, (count, ), generator=generator))
        samples.append(sample)
    return model.data_preprocessor(dict(inputs=images, data_samples=samples),
                                   training)
