"""Checks of the data a config points at, and of its work directory.

* :func:`check_num_classes`: the head's ``num_classes`` must equal the number
  of classes of the datasets;
* :func:`check_data_paths`: ``data_root``, annotation files, image folders
  and evaluator annotation files of the dataloaders that will run must exist;
* :func:`check_work_dir`: the work directory must be writable.
"""
import os
import os.path as osp
import tempfile
from typing import List, Optional, Sequence, Tuple

from mmengine.config import Config

from mmdet_conddetr.errors import ConfigCheckError, WorkDirError
from .registry_types import registries

__all__ = [
    'check_num_classes', 'check_data_paths', 'check_work_dir',
    'unwrap_datasets'
]


def unwrap_datasets(dataset_cfg) -> List:
    """The leaf dataset configs under dataset wrappers."""
    if not isinstance(dataset_cfg, dict):
        return []
    if 'datasets' in dataset_cfg:
        out = []
        for item in dataset_cfg['datasets']:
            out += unwrap_datasets(item)
        return out
    if 'dataset' in dataset_cfg:
        return unwrap_datasets(dataset_cfg['dataset'])
    return [dataset_cfg]


def _dataset_classes(dataset_cfg) -> Optional[Tuple[str, ...]]:
    metainfo = dataset_cfg.get('metainfo') or {}
    classes = metainfo.get('classes') if isinstance(metainfo, dict) else None
    if classes is not None:
        return tuple(classes)
    dataset_type = dataset_cfg.get('type')
    if isinstance(dataset_type, str):
        dataset_type = registries()['DATASETS'].get(dataset_type)
    meta = getattr(dataset_type, 'METAINFO', None)
    if isinstance(meta, dict) and meta.get('classes'):
        return tuple(meta['classes'])
    return None


def _head_num_classes(model_cfg) -> Tuple[Optional[str], Optional[int]]:
    prefix = 'model'
    while isinstance(model_cfg, dict) and 'module' in model_cfg and \
            'bbox_head' not in model_cfg:
        model_cfg, prefix = model_cfg['module'], prefix + '.module'
    head = model_cfg.get('bbox_head') if isinstance(model_cfg, dict) else None
    if isinstance(head, dict) and isinstance(head.get('num_classes'), int):
        return f'{prefix}.bbox_head.num_classes', head['num_classes']
    return None, None


def check_num_classes(cfg: Config,
                      loaders: Sequence[str] = ('train_dataloader',
                                                'val_dataloader',
                                                'test_dataloader')) -> None:
    """Raise ConfigCheckError if the head's ``num_classes`` differs from the
    number of classes of a dataset in ``loaders``."""
    key, num_classes = _head_num_classes(cfg.get('model'))
    if key is None:
        return
    problems = []
    counts = []
    for loader in loaders:
        loader_cfg = cfg.get(loader)
        if not isinstance(loader_cfg, dict):
            continue
        for dataset in unwrap_datasets(loader_cfg.get('dataset')):
            classes = _dataset_classes(dataset)
            if classes is not None and len(classes) != num_classes:
                shown = ', '.join(classes[:8]) + (
                    ', ...' if len(classes) > 8 else '')
                problems.append(f'{loader}.dataset has {len(classes)} '
                                f'classes ({shown})')
                counts.append(len(classes))
    if problems:
        fix = f'{key}={counts[0]}'
        raise ConfigCheckError(
            f'{key}={num_classes}, but ' + '; '.join(problems) + '. Make '
            f'them agree: set {fix} (e.g. --cfg-options {fix}), or give the '
            'datasets the matching metainfo=dict(classes=(...)).')


# -------------------------------------------------------------- data paths
def _is_local(path) -> bool:
    return isinstance(path, str) and '://' not in path


def _join(root, path):
    if not path:
        return root
    if root and _is_local(root) and not osp.isabs(path):
        return osp.join(root, path)
    return path


def check_data_paths(cfg: Config,
                     loaders: Sequence[str] = ('train_dataloader', )) -> None:
    """Raise ConfigCheckError naming every missing local data path of the
    datasets of ``loaders`` and of their evaluators."""
    problems = []
    roots = []
    for loader in loaders:
        loader_cfg = cfg.get(loader)
        if not isinstance(loader_cfg, dict):
            continue
        for dataset in unwrap_datasets(loader_cfg.get('dataset')):
            if dataset.get('backend_args'):
                continue
            where = f'{loader}.dataset'
            root = dataset.get('data_root')
            if root and _is_local(root):
                roots.append(root)
                if not osp.isdir(root):
                    problems.append(
                        f'{where}.data_root: directory not found: {root}')
                    continue
            ann = dataset.get('ann_file')
            if ann and _is_local(ann):
                full = _join(root, ann)
                if not osp.isfile(full):
                    problems.append(f'{where}.ann_file: annotation file not '
                                    f'found: {full}')
            prefix = dataset.get('data_prefix') or {}
            img = prefix.get('img', prefix.get('img_path')) if isinstance(
                prefix, dict) else None
            if img and _is_local(img):
                full = _join(root, img)
                if not osp.isdir(full):
                    problems.append(f'{where}.data_prefix.img: image folder '
                                    f'not found: {full}')
        evaluator = cfg.get(loader.replace('dataloader', 'evaluator'))
        for i, metric in enumerate(evaluator if isinstance(
                evaluator, (list, tuple)) else [evaluator]):
            if not isinstance(metric, dict) or metric.get('backend_args'):
                continue
            ann = metric.get('ann_file')
            if ann and _is_local(ann) and not osp.isfile(ann):
                name = loader.replace('dataloader', 'evaluator')
                if isinstance(evaluator, (list, tuple)):
                    name += f'.{i}'
                problems.append(f'{name}.ann_file: annotation file not '
                                f'found: {ann}')
    if problems:
        hint = ''
        if any('shapes' in str(r) for r in roots):
            hint = (' The shapes demo data is generated with `python '
                    'tools/misc/make_shapes_dataset.py --out DIR`.')
        raise ConfigCheckError(
            'dataset files are missing:\n  ' + '\n  '.join(problems) +
            '\nPoint the config at your data, e.g. --cfg-options '
            f'{loaders[0]}.dataset.data_root=/path/to/data/ (and the '
            'evaluator ann_file), or put the files there.' + hint)


# ---------------------------------------------------------------- work dir
def check_work_dir(work_dir: str) -> None:
    """Create ``work_dir`` if needed and make sure files can be written in
    it; raise WorkDirError otherwise."""
    if not _is_local(work_dir):
        return
    try:
        os.makedirs(work_dir, exist_ok=True)
        with tempfile.NamedTemporaryFile(
                dir=work_dir, prefix='.write_test_') as probe:
            probe.write(b'ok')
            probe.flush()
    except OSError as error:
        reason = error.strerror or str(error)
        raise WorkDirError(
            f'cannot write to the work directory {work_dir} ({reason}'
            f'{": " + error.filename if error.filename else ""}). Pass a '
            'writable directory with --work-dir DIR (it is created if '
            'missing).') from error
