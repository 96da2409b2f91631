"""Shared pytest setup.

The package is normally installed in editable mode (``make install``); putting
the repository root first on ``sys.path`` also lets the tests run from a plain
checkout and makes sure they exercise this working tree, not another copy.
"""
import os.path as osp
import sys

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)
