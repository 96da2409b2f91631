"""Every config loads; every COCO config builds and trains one iteration."""
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from builders import CONFIG_DIR, build_model, load_config, make_batch

ALL_CONFIGS = sorted(
    p.name for p in Path(CONFIG_DIR).glob('*.py'))
COCO_CONFIGS = [
    f'{backbone}_{epochs}ep.py' for backbone in ('r50', 'r101', 'dc5_r50',
                                                 'dc5_r101')
    for epochs in (50, 108)
]


def test_the_coco_configs_exist():
    assert set(COCO_CONFIGS) <= set(ALL_CONFIGS)


@pytest.mark.parametrize('name', ALL_CONFIGS)
def test_config_loads_in_our_scope(name):
    cfg = Config.fromfile(f'{CONFIG_DIR}/{name}')
    assert cfg.default_scope == 'mmdet_conddetr'
    assert 'model' in cfg and 'train_dataloader' in cfg


@pytest.mark.parametrize('name', COCO_CONFIGS)
def test_coco_config_settings(name):
    cfg = load_config(name)
    epochs, drop = (50, 40) if name.endswith('_50ep.py') else (108, 80)
    assert cfg.train_cfg.max_epochs == epochs
    [scheduler] = cfg.param_scheduler
    assert scheduler.type == 'MultiStepLR' and scheduler.milestones == [drop]
    assert scheduler.gamma == 0.1 and scheduler.end == epochs
    # fused: torch's one-call AdamW, the same update rule (not the loop)
    assert cfg.optim_wrapper.optimizer == dict(
        type='AdamW', lr=1e-4, weight_decay=1e-4, fused=True)
    assert cfg.optim_wrapper.clip_grad.max_norm == 0.1
    assert cfg.optim_wrapper.paramwise_cfg.custom_keys.backbone.lr_mult == 0.1
    per_gpu = 1 if 'dc5' in name else 2  # official, 8 GPUs
    assert cfg.auto_scale_lr == dict(enable=False, base_batch_size=8 * per_gpu)
    assert cfg.train_dataloader.batch_size == per_gpu
    assert cfg.val_dataloader.batch_size == cfg.test_dataloader.batch_size \
        == per_gpu
    assert cfg.model.num_queries == 300
    assert cfg.model.bbox_head.num_classes == 80
    depth = 101 if 'r101' in name else 50
    assert cfg.model.backbone.depth == depth
    assert cfg.model.backbone.type == ('ResNetDC5' if 'dc5' in name else
                                       'ResNet')
    assert cfg.model.backbone.frozen_stages == 1
    assert cfg.model.backbone.norm_eval is True
    assert cfg.model.backbone.norm_cfg.requires_grad is False
    assert cfg.train_dataloader.dataset.type == \
        'mmdet_conddetr.RobustCocoDataset'
    original = Config.fromfile(f'{CONFIG_DIR}/{name}')
    assert 'torchvision' not in original.model.backbone.init_cfg.checkpoint
    assert original.model.backbone.init_cfg.checkpoint.startswith(
        'https://download.pytorch.org/models/resnet')


@pytest.mark.parametrize('name', COCO_CONFIGS[::2])
def test_coco_config_trains_one_iteration(name):
    # The 108-epoch configs differ from these only in the schedule.
    torch.manual_seed(0)
    model = build_model(name, num_queries=10)
    model.train()
    batch = make_batch(
        model, [(64, 96), (96, 64)],
        boxes=[torch.tensor([[4., 8., 40., 50.]]),
               torch.tensor([[10., 10., 30., 60.], [0., 0., 64., 96.]])],
        labels=[torch.tensor([3]), torch.tensor([0, 79])],
        training=True)
    losses = model(**batch, mode='loss')
    total = sum(losses.values())
    assert torch.isfinite(total) and total > 0
    total.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_package_scoped_config_paths_resolve(tmp_path):
    """`mmdet_conddetr::` paths work from any directory once the package is
    installed (editable installs included: see utils/package_paths.py)."""
    from mmengine.hub import get_config
    user_config = tmp_path / 'my_config.py'
    user_config.write_text(
        "_base_ = 'mmdet_conddetr::conditional_detr/dc5_r50_50ep.py'\n"
        'train_cfg = dict(max_epochs=1)\n')
    cfg = Config.fromfile(str(user_config))
    assert cfg.model.backbone.type == 'ResNetDC5'
    assert cfg.train_cfg.max_epochs == 1
    hub_cfg = get_config('mmdet_conddetr::conditional_detr/r50_50ep.py')
    assert hub_cfg.model.type == 'ConditionalDETR'


def test_demo_detectors_share_the_budget_and_optimizer():
    """The two demo configs differ only in the detector: same optimizer,
    schedule and model size; the backbone's lr is 10x the transformer's,
    in two parameter groups."""
    conditional, detr = (load_config(name)
                         for name in ('shapes_demo.py', 'shapes_demo_detr.py'))
    for key in ('optim_wrapper', 'param_scheduler', 'train_cfg',
                'train_dataloader'):
        assert conditional[key] == detr[key], key
    for key in ('backbone', 'neck', 'num_queries', 'data_preprocessor'):
        assert conditional.model[key] == detr.model[key], key
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import DefaultScope
    model = build_model('shapes_demo.py')
    with DefaultScope.overwrite_default_scope('mmdet_conddetr'):
        groups = build_optim_wrapper(
            model, conditional.optim_wrapper).optimizer.param_groups
    lr = conditional.optim_wrapper.optimizer.lr
    assert [group['lr'] for group in groups] == [10 * lr, lr]
    assert {id(p) for p in groups[0]['params']} == {
        id(p) for p in model.backbone.parameters()}
