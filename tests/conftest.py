"""Shared pytest setup.

The package is normally installed in editable mode (``make install``); putting
the repository root first on ``sys.path`` also lets the tests run from a plain
checkout and makes sure they exercise this working tree, not another copy.
``tests/`` itself goes on the path too, so test files in sub-folders (which
mirror the package: ``tests/test_models/`` ...) import the shared ``builders``
and ``helpers`` modules as the top-level ones do.
"""
import os.path as osp
import sys

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TESTS_ROOT = osp.join(REPO_ROOT, 'tests')
for path in (TESTS_ROOT, REPO_ROOT):
    if path not in sys.path:
        sys.path.insert(0, path)
