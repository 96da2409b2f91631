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
interpreter (a child forked from one that has imported only third-party
packages, so torch, mmdet, ... are imported once, not once per subpackage).
"""
import ast
import json
import os
import os.path as osp
import subprocess
import sys
import threading

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


# Third-party packages ours build on: importing them is most of the cost of
# importing any subpackage of ours, so one interpreter imports them once and
# forks a child per module checked (below).
PRELOAD = ('torch', 'mmengine.runner', 'mmcv.transforms', 'mmcv.ops',
           'mmdet.models', 'mmdet.datasets', 'mmdet.evaluation', 'mmdet.apis',
           'matplotlib.pyplot')

# Prints the modules of ours the preloads brought (there must be none), then
# for each module named on stdin forks a child that imports just that module
# and answers with the subpackages of ours it loaded (or the traceback). The
# child starts with none of our modules loaded, as a fresh interpreter does,
# and the packages it finds already imported imported nothing of ours.
_IMPORTER = '''
import importlib, json, os, sys, traceback
for name in {preload!r}:
    importlib.import_module(name)
print(json.dumps(sorted(m for m in sys.modules
                        if m.split('.')[0] == 'mmdet_conddetr')), flush=True)
for line in sys.stdin:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            importlib.import_module(line.strip())
            answer = sorted({{m.split('.')[1] for m in sys.modules
                              if m.startswith('mmdet_conddetr.')}})
        except BaseException:
            answer = traceback.format_exc()
        with os.fdopen(write, 'w') as f:
            f.write(json.dumps(answer))
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        answer = f.read()
    status = os.waitpid(pid, 0)[1]
    print(answer or json.dumps(f'the child died (wait status {{status}})'),
          flush=True)
'''


def test_each_subpackage_imports_alone_and_loads_nothing_above_it(tmp_path):
    log = open(tmp_path / 'importer.log', 'w+')
    proc = subprocess.Popen(
        [sys.executable, '-c', _IMPORTER.format(preload=PRELOAD)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
        text=True, cwd=REPO_ROOT, env=dict(os.environ, OMP_NUM_THREADS='1'))
    watchdog = threading.Timer(300, proc.kill)
    watchdog.start()

    def loaded(module):
        proc.stdin.write(module + '\n')
        proc.stdin.flush()
        answer = json.loads(proc.stdout.readline() or '"no answer"')
        log.seek(0)
        assert isinstance(answer, list), \
            f'import {module} failed:\n{answer}\n{log.read()[-3000:]}'
        return set(answer)

    try:
        preloaded = json.loads(proc.stdout.readline() or '"no answer"')
        log.seek(0)
        assert preloaded == [], f'{preloaded}\n{log.read()[-3000:]}'
        # Importing the package registers the models, so it loads models
        # and what they need: those subpackages are checked by this import.
        base = loaded('mmdet_conddetr')
        assert 'models' in base
        assert base <= ALLOWED['models'] | {'models', 'version'}
        others = sorted(set(ALLOWED) - base - {'version'})
        assert 'engine' in others and 'datasets' in others
        for sub in others:
            extra = loaded(f'mmdet_conddetr.{sub}') - base - {sub}
            assert extra <= ALLOWED[sub], \
                f'{sub} loads {extra - ALLOWED[sub]}'
    finally:
        watchdog.cancel()
        proc.stdin.close()
        proc.wait(timeout=60)
        log.close()
