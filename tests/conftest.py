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

import pytest

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TESTS_ROOT = osp.join(REPO_ROOT, 'tests')
for path in (TESTS_ROOT, REPO_ROOT):
    if path not in sys.path:
        sys.path.insert(0, path)


@pytest.fixture(scope='session', autouse=True)
def format_each_config_text_once():
    """An mmengine Runner formats its whole config with yapf for the log,
    the dump, the message hub and every checkpoint it saves (0.1-1 s each
    here). The same text always formats the same, so in this process each
    distinct text is formatted once (tool subprocesses are untouched)."""
    from mmengine.config import config as config_module
    original = config_module.FormatCode
    formatted = {}

    def format_code(text, **kwargs):
        key = (text, repr(sorted(kwargs.items())))
        if key not in formatted:
            formatted[key] = original(text, **kwargs)
        return formatted[key]

    config_module.FormatCode = format_code
    yield
    config_module.FormatCode = original
