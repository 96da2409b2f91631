"""The detector of a config with the weights of a checkpoint of any layout
this package reads (ours, official, detrex, Hugging Face, mmdet), converted
while loading."""
import logging
from typing import Optional, Tuple

from mmengine.config import Config
from mmengine.registry import DefaultScope
from torch import nn


def load_config(config: str, cfg_options: Optional[dict] = None) -> Config:
    """A config file, or a ``mmdet_conddetr::conditional_detr/<name>.py``
    name, with ``cfg_options`` merged in."""
    import mmdet_conddetr  # noqa: F401  (resolves mmdet_conddetr:: names)
    from mmengine.hub import get_config
    cfg = get_config(config) if '::' in config else Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg


def _quiet_init_weights(model: nn.Module) -> None:
    """``init_weights`` without mmengine's per-parameter INFO lines."""
    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        model.init_weights()
    finally:
        logger.setLevel(level)


def build_detector(cfg: Config,
                   checkpoint: Optional[str] = None) -> nn.Module:
    """The config's model; with ``checkpoint`` its weights, loaded strictly
    after conversion, else the official random initialisation. The
    backbone's pretrained ``init_cfg`` is dropped (the checkpoint carries
    the backbone; nothing is downloaded)."""
    from mmdet_conddetr.registry import MODELS
    cfg.model.backbone.init_cfg = None
    with DefaultScope.overwrite_default_scope('mmdet_conddetr'):
        model = MODELS.build(cfg.model)
    if checkpoint is None:
        _quiet_init_weights(model)
        return model
    from mmdet_conddetr.checkpoint import load_foreign_checkpoint
    result = load_foreign_checkpoint(
        checkpoint,
        num_classes=model.bbox_head.num_classes,
        target_keys=set(model.state_dict()))
    model.load_state_dict(result.state_dict, strict=True)
    model.loaded_layout = result.source
    return model


def load_detector(config: str,
                  checkpoint: Optional[str] = None,
                  cfg_options: Optional[dict] = None
                  ) -> Tuple[nn.Module, Config]:
    """:func:`load_config` then :func:`build_detector`, eval mode."""
    cfg = load_config(config, cfg_options)
    return build_detector(cfg, checkpoint).eval(), cfg
