"""Checks of a config before anything is built, with messages that say what
is wrong and how to fix it.

* :func:`load_config`: ``Config.fromfile`` with clear errors for a missing
  file (and the nearest existing config names), a ``_base_`` the installed
  package lacks (``mmdet::...``), an unknown package scope and syntax errors.
* :func:`check_registry_types`: every ``type='...'`` of the config must name a
  registered class; an unknown one is reported with its place in the config
  and the nearest registered names.
* :func:`check_num_classes`: the head's ``num_classes`` must equal the number
  of classes of the datasets.
* :func:`check_data_paths`: ``data_root``, annotation files, image folders
  and evaluator annotation files of the dataloaders that will run must exist.
* :func:`check_work_dir`: the work directory must be writable.
* :func:`suggest_registered` / :func:`explain_registry_key_error`: nearest
  registered names for an unknown type (also used on errors raised while
  building, see :mod:`mmdet_conddetr.engine.cli`).

All raise :class:`~mmdet_conddetr.errors.ConfigCheckError` (or
``WorkDirError``) listing every problem found, not only the first.
"""
import difflib
import os
import os.path as osp
import re
import tempfile
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple

from mmengine.config import Config

__all__ = [
    'load_config', 'check_registry_types', 'check_num_classes',
    'check_data_paths', 'check_work_dir', 'suggest_registered',
    'explain_registry_key_error', 'registered_names'
]

# Values of ``type`` that are not looked up in a registry: mmcv ops picked by
# name (``nms``...) and torch.nn layers some configs name directly.
_NOT_REGISTRY_KEYS = ('nms', 'rpn_proposal', 'roi_layer')


def _errors():
    from mmdet_conddetr.errors import ConfigCheckError, WorkDirError
    return ConfigCheckError, WorkDirError


# --------------------------------------------------------------- loading
def _nearest_files(path: str, limit: int = 3) -> List[str]:
    directory, base = osp.split(osp.abspath(path))
    candidates = []
    root = directory
    while root and not osp.isdir(root):
        root = osp.dirname(root)
    if root and root != '/':
        for dirpath, _, files in os.walk(root):
            if dirpath.count(os.sep) - root.count(os.sep) > 2:
                continue
            candidates += [
                osp.join(dirpath, f) for f in files if f.endswith('.py')
            ]
    names = {osp.basename(c): c for c in candidates}
    close = difflib.get_close_matches(base, list(names), n=limit, cutoff=0.6)
    return [osp.relpath(names[c]) for c in close]


def load_config(path: str) -> Config:
    """``Config.fromfile(path)`` with user-facing errors."""
    ConfigCheckError, _ = _errors()
    if not osp.isfile(path):
        near = _nearest_files(path)
        hint = (' Did you mean ' + ' or '.join(near) + '?') if near else (
            ' The configs of this package are under configs/conditional_detr/.')
        raise ConfigCheckError(f'config file not found: {path}.{hint}')
    try:
        return Config.fromfile(path)
    except FileNotFoundError as error:
        raise ConfigCheckError(_missing_base_message(path, error)) from error
    except SyntaxError as error:
        raise ConfigCheckError(
            f'{path} (or one of its _base_ files) is not valid Python: '
            f'{error.msg} at line {error.lineno}. Fix the syntax.') from error
    except AssertionError as error:
        match = re.search(r'does not support to load (\S+) config', str(error))
        if not match:
            raise
        raise ConfigCheckError(
            f'{path} (or one of its _base_ files) refers to '
            f'"{match.group(1)}::..." configs, but the package '
            f'{match.group(1)!r} is not installed. Install it or copy the '
            'base config next to yours and refer to it by a relative '
            'path.') from error


def _missing_base_message(path: str, error: FileNotFoundError) -> str:
    text = str(error)
    match = re.search(r'file "([^"]+)" does not exist', text) or \
        re.search(r"No such file or directory: '([^']+)'", text)
    missing = match.group(1) if match else text
    mim = re.search(r'[/\\]([^/\\]+)[/\\]\.mim[/\\]configs[/\\](.+)$', missing)
    if mim:
        package, relative = mim.group(1), mim.group(2)
        version = ''
        try:
            module = __import__(package)
            version = f' {getattr(module, "__version__", "")}'.rstrip()
        except ImportError:
            pass
        near = _nearest_files(missing)
        hint = (' Nearest existing: ' + ', '.join(
            f'{package}::' + n.split(f'.mim{os.sep}configs{os.sep}')[-1]
            for n in near) + '.') if near else ''
        return (f'{path} (or one of its _base_ files) inherits '
                f'"{package}::{relative}", which the installed {package}'
                f'{version} does not have.{hint} mmdet_conddetr is tested '
                'with mmdet 3.3.0 (pip install "mmdet==3.3.0"); or copy that '
                'base config next to yours and refer to it by a relative '
                'path.')
    return (f'{path} (or one of its _base_ files) refers to a file that '
            f'does not exist: {missing}. Fix the _base_ path (relative paths '
            'are relative to the config that names them).')


# ---------------------------------------------------------- registry types
def _registries():
    from mmdet_conddetr import registry
    from mmengine.registry import Registry
    return {
        name: reg
        for name, reg in vars(registry).items()
        if isinstance(reg, Registry)
    }


def registered_names(registry) -> List[str]:
    """Names registered in ``registry``, its parents and the siblings its
    root lets a scoped name reach (``mmdet.X``)."""
    names = set()
    seen = []
    node = registry
    while node is not None:
        seen.append(node)
        node = node.parent
    root = seen[-1]
    stack = [root]
    while stack:
        node = stack.pop()
        try:
            node.import_from_location()
        except Exception:  # a broken optional location must not hide names
            pass
        names.update(node.module_dict)
        stack.extend(node.children.values())
    return sorted(names)


def suggest_registered(name: str, registry=None, limit: int = 3) -> List[str]:
    """Nearest registered names to ``name`` (case-insensitive first)."""
    regs = [registry] if registry is not None else list(_registries().values())
    names = set()
    for reg in regs:
        names.update(registered_names(reg))
    bare = name.split('.')[-1]
    lower = {n.lower(): n for n in names}
    exact = [lower[bare.lower()]] if bare.lower() in lower else []
    close = difflib.get_close_matches(bare, sorted(names), n=limit, cutoff=0.6)
    by_case = [
        lower[m] for m in difflib.get_close_matches(
            bare.lower(), sorted(lower), n=limit, cutoff=0.6)
    ]
    out = []
    for candidate in exact + close + by_case:
        if candidate not in out and candidate != bare:
            out.append(candidate)
    return out[:limit]


def _registry_for_path(path: Sequence[str]):
    regs = _registries()
    keys = [str(p) for p in path if not str(p).isdigit()]
    last = keys[-2] if len(keys) >= 2 else (keys[0] if keys else '')
    first = keys[0] if keys else ''
    if 'init_cfg' in keys:
        return regs['WEIGHT_INITIALIZERS']
    if any(k in ('assigner', 'match_costs', 'sampler', 'bbox_coder',
                 'prior_generator', 'anchor_generator') for k in keys) and \
            first in ('model', 'tta_model'):
        return regs['TASK_UTILS']
    if first in ('model', 'tta_model'):
        return regs['MODELS']
    if 'pipeline' in last or first == 'tta_pipeline' or 'pipeline' in keys:
        return regs['TRANSFORMS']
    if last in ('sampler', 'batch_sampler'):
        return regs['DATA_SAMPLERS']
    if last == 'dataset' or last == 'datasets' or 'dataset' in keys:
        return regs['DATASETS']
    if first in ('default_hooks', 'custom_hooks'):
        return regs['HOOKS']
    if first == 'optim_wrapper':
        return regs['OPTIMIZERS'] if 'optimizer' in keys else \
            regs['OPTIM_WRAPPERS']
    if first == 'param_scheduler':
        return regs['PARAM_SCHEDULERS']
    if first.endswith('evaluator'):
        return regs['METRICS']
    if first == 'visualizer':
        return regs['VISBACKENDS'] if 'vis_backends' in keys else \
            regs['VISUALIZERS']
    if first in ('train_cfg', 'val_cfg', 'test_cfg') and len(keys) == 2:
        return regs['LOOPS']
    if first == 'log_processor':
        return regs['LOG_PROCESSORS']
    if first == 'model_wrapper_cfg':
        return regs['MODEL_WRAPPERS']
    return None


def _walk_types(node, path=(), scope=None) -> Iterator[Tuple[Tuple, str, str]]:
    """(path, type name, scope it is built in) of every string ``type``;
    a dict's ``_scope_`` applies to it and to what it contains."""
    if isinstance(node, dict):
        scope = node.get('_scope_', scope)
        for key, value in node.items():
            if key == 'type' and isinstance(value, str):
                yield path + ('type', ), value, scope
            elif key != '_scope_':
                yield from _walk_types(value, path + (key, ), scope)
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from _walk_types(value, path + (str(i), ), scope)


def _scopes_registering(name: str, registry=None) -> List[str]:
    """Scopes whose registry (of ``registry``'s kind) holds ``name``."""
    regs = [registry] if registry is not None else list(
        _registries().values())
    scopes = []
    for reg in regs:
        root = reg
        while root.parent is not None:
            root = root.parent
        stack = [root]
        while stack:
            node = stack.pop()
            if name in node.module_dict and node.scope not in scopes:
                scopes.append(node.scope)
            stack.extend(node.children.values())
    return scopes


def _resolvable(name: str, scope: Optional[str]) -> bool:
    for reg in _registries().values():
        if scope and '.' not in name:
            # As mmengine builds under _scope_: that scope's registry, then
            # its parents (a 'scope.name' lookup would skip the parents).
            reg = reg._get_root_registry()._search_child(scope)
            if reg is None:
                continue
        try:
            if reg.get(name) is not None:
                return True
        except Exception:  # get() raises for unknown scope prefixes
            continue
    bare = name.split('.')[-1]
    try:
        import mmcv.ops
        if hasattr(mmcv.ops, bare):
            return True
    except ImportError:
        pass
    import torch.nn
    return hasattr(torch.nn, bare)


def check_registry_types(cfg: Config, keys: Optional[Iterable[str]] = None):
    """Raise ConfigCheckError if a ``type`` names no registered class.

    Args:
        keys: Top-level config keys to check (default: all).
    """
    ConfigCheckError, _ = _errors()
    problems = []
    items = cfg.items() if keys is None else ((k, cfg.get(k)) for k in keys)
    for top, value in items:
        if value is None:
            continue
        for path, name, scope in _walk_types(value, (top, )):
            if any(p in _NOT_REGISTRY_KEYS for p in path):
                continue
            if _resolvable(name, scope):
                continue
            registry = _registry_for_path(path[:-1])
            near = suggest_registered(name, registry)
            if not near and registry is not None:
                near = suggest_registered(name)
            where = '.'.join(path)
            hint = f' Did you mean {" or ".join(repr(n) for n in near)}?' \
                if near else ''
            reg_name = f' (a {registry.name})' if registry is not None else ''
            in_scope = ''
            if scope and '.' not in name:
                in_scope = f' in the {scope!r} scope (set by _scope_)'
                owners = _scopes_registering(name, registry)
                if owners:
                    hint = (f' It is registered in the {owners[0]!r} scope: '
                            f"write type='{owners[0]}.{name}'.")
            problems.append(f'{where}={name!r}{reg_name} is not a registered '
                            f'type{in_scope}.{hint}')
    if problems:
        raise ConfigCheckError(
            'unknown type name(s) in the config:\n  ' + '\n  '.join(problems)
            + '\nFix the spelling, or import the module that registers it '
            "with custom_imports=dict(imports=['your.module']).")


_KEY_ERROR = re.compile(r"(\S+) is not in the (\S+?)::(.+?) registry")


def explain_registry_key_error(error: BaseException) -> Optional[str]:
    """A user message for mmengine's "X is not in the ... registry" error
    (raised while building), or None if ``error`` is not one."""
    match = _KEY_ERROR.search(str(error))
    if not match:
        return None
    name, scope, reg_name = match.group(1).strip('`\'"'), match.group(2), \
        match.group(3)
    registry = next((r for r in _registries().values()
                     if r.name == reg_name), None)
    near = suggest_registered(name, registry)
    hint = f' Did you mean {" or ".join(repr(n) for n in near)}?' \
        if near else ''
    return (f'{name!r} is not a registered {reg_name} type (looked up in '
            f'the {scope!r} scope and its parents).{hint} Fix the spelling '
            'in the config, or import the module that registers it with '
            "custom_imports=dict(imports=['your.module']).")


# ------------------------------------------------------------ num classes
def _unwrap_datasets(dataset_cfg) -> List:
    """The leaf dataset configs under dataset wrappers."""
    if not isinstance(dataset_cfg, dict):
        return []
    if 'datasets' in dataset_cfg:
        out = []
        for item in dataset_cfg['datasets']:
            out += _unwrap_datasets(item)
        return out
    if 'dataset' in dataset_cfg:
        return _unwrap_datasets(dataset_cfg['dataset'])
    return [dataset_cfg]


def _dataset_classes(dataset_cfg) -> Optional[Tuple[str, ...]]:
    metainfo = dataset_cfg.get('metainfo') or {}
    classes = metainfo.get('classes') if isinstance(metainfo, dict) else None
    if classes is not None:
        return tuple(classes)
    dataset_type = dataset_cfg.get('type')
    if isinstance(dataset_type, str):
        dataset_type = _registries()['DATASETS'].get(dataset_type)
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
    ConfigCheckError, _ = _errors()
    key, num_classes = _head_num_classes(cfg.get('model'))
    if key is None:
        return
    problems = []
    counts = []
    for loader in loaders:
        loader_cfg = cfg.get(loader)
        if not isinstance(loader_cfg, dict):
            continue
        for dataset in _unwrap_datasets(loader_cfg.get('dataset')):
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
    ConfigCheckError, _ = _errors()
    problems = []
    roots = []
    for loader in loaders:
        loader_cfg = cfg.get(loader)
        if not isinstance(loader_cfg, dict):
            continue
        for dataset in _unwrap_datasets(loader_cfg.get('dataset')):
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
    _, WorkDirError = _errors()
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
