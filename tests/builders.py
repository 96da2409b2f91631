"""Small builders shared by the model tests (no downloads, init_cfg=None)."""
from typing import Optional, Sequence

import torch
from mmdet.structures import DetDataSample
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.structures import InstanceData

import mmdet_conddetr  # noqa: F401
from mmdet_conddetr.registry import MODELS

CONFIG_DIR = 'configs/conditional_detr'


def load_config(name: str) -> Config:
    cfg = Config.fromfile(f'{CONFIG_DIR}/{name}')
    cfg.model.backbone.init_cfg = None
    return cfg


def build_model(name: str = 'r50_50ep.py', **model_overrides):
    """Build a config's model with random weights and the official init."""
    cfg = load_config(name)
    cfg.merge_from_dict(
        {f'model.{key}': value for key, value in model_overrides.items()})
    with DefaultScope.overwrite_default_scope('mmdet_conddetr'):
        model = MODELS.build(cfg.model)
    model.init_weights()
    return model


def make_batch(model,
               sizes: Sequence[Sequence[int]],
               boxes: Optional[Sequence[torch.Tensor]] = None,
               labels: Optional[Sequence[torch.Tensor]] = None,
               seed: int = 0,
               training: bool = False):
    """Random uint8 images of the given (h, w) sizes through the model's
    data preprocessor, with optional ground truths in pixel xyxy."""
    generator = torch.Generator().manual_seed(seed)
    images, samples = [], []
    for index, (height, width) in enumerate(sizes):
        images.append(
            torch.randint(0, 256, (3, height, width), generator=generator,
                          dtype=torch.uint8))
        sample = DetDataSample(
            metainfo=dict(
                img_shape=(height, width),
                ori_shape=(height, width),
                scale_factor=(1.0, 1.0)))
        if boxes is not None:
            sample.gt_instances = InstanceData(
                bboxes=boxes[index].float(), labels=labels[index].long())
        samples.append(sample)
    return model.data_preprocessor(
        dict(inputs=images, data_samples=samples), training)
