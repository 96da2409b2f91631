"""Every ``type`` of a config must name a registered class.

* :func:`check_registry_types`: an unknown type is reported with its place
  in the config and the nearest registered names, before anything is built;
* :func:`explain_registry_key_error`: the same help for mmengine's
  "X is not in the ... registry" raised while building (used by
  :mod:`mmdet_conddetr.engine.cli`);
* :func:`suggest_registered` / :func:`registered_names`: the name lists.
"""
import difflib
import re
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple

from mmengine.config import Config
from mmengine.registry import Registry

from mmdet_conddetr import registry as our_registry
from mmdet_conddetr.errors import ConfigCheckError

__all__ = [
    'check_registry_types', 'explain_registry_key_error',
    'suggest_registered', 'registered_names', 'registries'
]

# Values of ``type`` that are not looked up in a registry: mmcv ops picked by
# name (``nms``...) and torch.nn layers some configs name directly.
_NOT_REGISTRY_KEYS = ('nms', 'rpn_proposal', 'roi_layer')


def registries() -> dict:
    """Name -> registry of every node of the ``mmdet_conddetr`` scope."""
    return {
        name: reg
        for name, reg in vars(our_registry).items()
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
    regs = [registry] if registry is not None else list(registries().values())
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
    regs = registries()
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
        registries().values())
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
    for reg in registries().values():
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
    registry = next((r for r in registries().values()
                     if r.name == reg_name), None)
    near = suggest_registered(name, registry)
    hint = f' Did you mean {" or ".join(repr(n) for n in near)}?' \
        if near else ''
    return (f'{name!r} is not a registered {reg_name} type (looked up in '
            f'the {scope!r} scope and its parents).{hint} Fix the spelling '
            'in the config, or import the module that registers it with '
            "custom_imports=dict(imports=['your.module']).")

