"""Every COCO config uses the official data pipeline and batching.

The per-GPU batch sizes are the official ones (README/scripts: 2 images per
GPU, DC5 1; 8 GPUs), which metafile.yml records as total batch sizes.
"""
import json
import os.path as osp
from pathlib import Path

import pytest
import yaml
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.runner import Runner
from PIL import Image
from torch.utils.data import BatchSampler

from builders import CONFIG_DIR
from helpers.photos import write_photos

COCO_CONFIGS = [
    f'{backbone}_{epochs}ep.py'
    for backbone in ('r50', 'r101', 'dc5_r50', 'dc5_r101')
    for epochs in (50, 108)
]
GPUS = 8


def _metafile_batch_sizes():
    meta = yaml.safe_load(Path(CONFIG_DIR, 'metafile.yml').read_text())
    return {
        Path(m['Config']).name: m['Metadata']['Batch Size']
        for m in meta['Models']
    }


@pytest.fixture(scope='module')
def reference():
    return Config.fromfile(f'{CONFIG_DIR}/r50_50ep.py')


@pytest.mark.parametrize('name', COCO_CONFIGS)
def test_every_coco_config_uses_the_official_pipeline(name, reference):
    cfg = Config.fromfile(f'{CONFIG_DIR}/{name}')
    per_gpu = 1 if name.startswith('dc5') else 2
    assert _metafile_batch_sizes()[name] == GPUS * per_gpu
    assert cfg.auto_scale_lr.base_batch_size == GPUS * per_gpu
    train = cfg.train_dataloader
    assert train.dataset.pipeline == reference.train_pipeline
    # the eval-pipeline tests build R50's and DC5's; all share these
    assert cfg.model.data_preprocessor == reference.model.data_preprocessor
    assert train.batch_size == per_gpu
    assert train.batch_sampler is None  # no aspect-ratio grouping
    assert train.drop_last is True and train.sampler.shuffle is True
    for loader in (cfg.val_dataloader, cfg.test_dataloader):
        assert loader.dataset.pipeline == reference.test_pipeline
        assert loader.batch_size == per_gpu  # as the official evaluation
        assert loader.sampler.shuffle is False
    for loader in (train, cfg.val_dataloader, cfg.test_dataloader):
        assert loader.pin_memory is True
        assert loader.dataset.type == 'mmdet_conddetr.RobustCocoDataset'
        assert loader.dataset._scope_ == 'mmdet_conddetr'
        assert loader.dataset.convention == 'official'
        load = loader.dataset.pipeline[0]
        assert load.type in ('mmdet_conddetr.RobustLoadImageFromFile',
                             'LoadImageFromFile')
        assert load.color_type == 'color_ignore_orientation'
        assert load.imdecode_backend == 'pillow'
    assert [t.type for t in cfg.test_dataloader.dataset.pipeline][1] == \
        'mmdet_conddetr.DETRResize'


def test_the_test_loader_name_resolves_to_the_robust_loader():
    from mmdet_conddetr.datasets import RobustLoadImageFromFile
    from mmdet_conddetr.registry import TRANSFORMS
    assert TRANSFORMS.get('LoadImageFromFile') is RobustLoadImageFromFile


def test_runner_builds_random_pairs_without_aspect_grouping(tmp_path):
    photos = write_photos(str(tmp_path))
    ann = tmp_path / 'ann.json'
    from mmdet.datasets import CocoDataset
    classes = CocoDataset.METAINFO['classes']
    images = []
    for i, path in enumerate(photos.values()):
        width, height = Image.open(path).size
        images.append(dict(id=i, file_name=osp.basename(path), width=width,
                           height=height))
    ann.write_text(json.dumps(dict(
        images=images, annotations=[],
        categories=[dict(id=i + 1, name=n) for i, n in enumerate(classes)])))
    cfg = Config.fromfile(f'{CONFIG_DIR}/r50_50ep.py')
    loader_cfg = cfg.train_dataloader
    loader_cfg.dataset.update(data_root=str(tmp_path), ann_file=str(ann),
                              data_prefix=dict(img=''))
    loader_cfg.update(num_workers=0, persistent_workers=False)
    with DefaultScope.overwrite_default_scope('mmdet_conddetr'):
        loader = Runner.build_dataloader(loader_cfg, seed=0)
    assert type(loader.batch_sampler) is BatchSampler
    assert loader.batch_sampler.batch_size == 2
    assert loader.batch_sampler.drop_last is True
    assert loader.pin_memory is True
    assert len(loader) == len(photos) // 2  # the odd image is dropped


def test_switching_back_to_mmdets_pipeline(tmp_path):
    """The README's lines for a config that prefers mmdet's pipeline."""
    base = osp.abspath(f'{CONFIG_DIR}/r50_50ep.py')
    child = tmp_path / 'mine.py'
    child.write_text(
        f"_base_ = '{base}'\n"
        'train_dataloader = dict(dataset=dict(pipeline='
        '_base_.mmdet_train_pipeline))\n'
        'val_dataloader = test_dataloader = dict(dataset=dict(pipeline='
        '_base_.mmdet_test_pipeline))\n')
    cfg = Config.fromfile(str(child))
    train = cfg.train_dataloader.dataset.pipeline
    assert train[0].type == 'LoadImageFromFile'
    assert 'color_type' not in train[0]
    choice = train[3].transforms
    assert choice[0][0].keep_ratio is True
    assert choice[0][0].scales[0] == (480, 1333)
    for loader in (cfg.val_dataloader, cfg.test_dataloader):
        resize = loader.dataset.pipeline[1]
        assert resize.type == 'Resize' and resize.scale == (1333, 800)
