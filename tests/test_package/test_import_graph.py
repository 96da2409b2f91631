"""Imports flow one way through the package, with no delayed cycles.

The graph (a package may import only the ones listed for it; tools/ may
import anything)::

    errors, version, registry,       leaf modules: import nothing of ours
    size_rule
    utils                            <- leaves
    checkpoint                       <- utils, leaves
    models                           <- checkpoint (the detector's
                                        load-state-dict pre-hook converts
                                        foreign checkpoints), utils, leaves
    datasets                         <- utils, leaves
    visualization, deploy            <- models, checkpoint, datasets, utils,
                                        leaves
    benchmark                        <- deploy (its --ort rows export our
                                        model), models, checkpoint,
                                        datasets, utils, leaves
    engine                           <- models, checkpoint, datasets, utils,
                                        leaves

so models <- engine <- tools, and checkpoint sits below models: it converts
state dicts and needs nothing from the model code. Checked twice: statically
(every ``import`` statement, also those inside functions, so a delayed import
cannot hide a cycle) and by importing each subpackage alone in a fresh
interpreter.
"""
import ast
import os
import os.path as osp
import subprocess
import sys

REPO_ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
PACKAGE = osp.join(REPO_ROOT, 'mmdet_conddetr')
LEAVES = {'errors', 'version', 'registry', 'size_rule'}
_BASE = LEAVES | {'utils'}
ALLOWED = {
    'errors': set(),
    'version': set(),
    'registry': set(),
    'size_rule': set(),
    'utils': LEAVES,
    'checkpoint': _BASE,
    'models': _BASE | {'checkpoint'},
    'datasets': _BASE,
    'visualization': _BASE | {'checkpoint', 'models', 'datasets'},
    'deploy': _BASE | {'checkpoint', 'models', 'datasets'},
    'benchmark': _BASE | {'checkpoint', 'models', 'datasets', 'deploy'},
    'engine': _BASE | {'checkpoint', 'models', 'datasets'},
}


def _subpackage_of(module: str) -> str:
    parts = module.split('.')
    return parts[1] if len(parts) > 1 else ''


def _imports(path: str, module: str):
    """Names of our modules that ``path`` (module ``module``) imports."""
    is_init = path.endswith('__init__.py')
    parts = module.split('.')
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if not node.level:
                yield node.module
                continue
            keep = len(parts) - node.level + (1 if is_init else 0)
            base = '.'.join(parts[:keep])
            if node.module:
                yield f'{base}.{node.module}'
            else:
                yield from (f'{base}.{a.name}' for a in node.names)


def _edges():
    """(importing subpackage, imported subpackage, file) of our imports."""
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if not name.endswith('.py'):
                continue
            path = osp.join(folder, name)
            rel = osp.relpath(path, REPO_ROOT)[:-3].replace(os.sep, '.')
            module = rel[:-len('.__init__')] if name == '__init__.py' \
                else rel
            source = _subpackage_of(rel)
            for target in _imports(path, module):
                if target and target.startswith('mmdet_conddetr.'):
                    target = _subpackage_of(target)
                    if target != source:
                        yield source, target, osp.relpath(path, REPO_ROOT)


def test_every_subpackage_is_in_the_graph():
    found = {n[:-3] if n.endswith('.py') else n for n in os.listdir(PACKAGE)
             if not n.startswith(('_', '.'))}
    assert found == set(ALLOWED)


def test_no_module_imports_a_package_above_it():
    bad = [f'{path}: {source} imports {target}'
           for source, target, path in _edges()
           if source != '__init__' and target not in ALLOWED[source]]
    assert not bad, '\n'.join(bad)


def test_the_scan_sees_imports_inside_functions(tmp_path):
    path = tmp_path / 'probe.py'
    path.write_text('def f():\n    from ..engine import cli\n')
    assert list(_imports(str(path), 'mmdet_conddetr.models.probe')) == \
        ['mmdet_conddetr.engine']


_LOADED = ('import sys, {module}; print(" ".join(sorted({{m.split(".")[1] '
           'for m in sys.modules if m.startswith("mmdet_conddetr.")}})))')


def _loaded_in_fresh_interpreters(modules, at_once=2):
    env = dict(os.environ, OMP_NUM_THREADS='1')
    out = {}
    for start in range(0, len(modules), at_once):
        procs = {
            m: subprocess.Popen(
                [sys.executable, '-c', _LOADED.format(module=m)],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                cwd=REPO_ROOT, env=env)
            for m in modules[start:start + at_once]
        }
        for module, proc in procs.items():
            stdout, stderr = proc.communicate(timeout=300)
            assert proc.returncode == 0, f'import {module} failed:\n{stderr}'
            out[module] = set(stdout.split())
    return out


def test_each_subpackage_imports_alone_and_loads_nothing_above_it():
    # Importing the package registers the models, so it loads models and
    # what they need: those subpackages are checked by this first import.
    base = _loaded_in_fresh_interpreters(['mmdet_conddetr'])['mmdet_conddetr']
    assert 'models' in base
    assert base <= ALLOWED['models'] | {'models', 'version'}
    others = sorted(set(ALLOWED) - base - {'version'})
    assert 'engine' in others and 'datasets' in others
    loaded = _loaded_in_fresh_interpreters(
        [f'mmdet_conddetr.{sub}' for sub in others])
    for sub in others:
        extra = loaded[f'mmdet_conddetr.{sub}'] - base - {sub}
        assert extra <= ALLOWED[sub], f'{sub} loads {extra - ALLOWED[sub]}'
