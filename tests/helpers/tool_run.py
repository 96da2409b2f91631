"""Run a tool of tools/ in-process, with its real ``run_cli`` wrapper, so a
test asserts exactly what the user sees on stderr."""
import os.path as osp
import runpy
import sys

import pytest

from .reliability import TOOLS


def run_tool(script, args, capsys, monkeypatch):
    """Run tools/<script> in-process; return (exit status, stderr)."""
    monkeypatch.setattr(sys, 'argv', [script] + [str(a) for a in args])
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        runpy.run_path(osp.join(TOOLS, script), run_name='__main__')
    err = capsys.readouterr().err
    return info.value.code, err


def tool_error(script, args, capsys, monkeypatch):
    """The one ``error: ...`` message of a failing tool (exit status 1, no
    traceback)."""
    code, err = run_tool(script, args, capsys, monkeypatch)
    assert code == 1, err
    assert 'error: ' in err, err
    err = err[err.index('error: '):]  # after import-time warnings
    assert 'Traceback' not in err, err
    return err
