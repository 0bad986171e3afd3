"""Tools started without the project's environment (tools/_require.py)."""
import importlib.util
import os
import os.path as osp
import sys

import pytest

from conftest import ROOT, run_tool


def _require_module():
    spec = importlib.util.spec_from_file_location('_require',
                                                  osp.join(ROOT, 'tools', '_require.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_present_modules_pass():
    _require_module().require('os', 'json')


def test_another_python_restarts_with_the_venv(monkeypatch, capsys):
    mod = _require_module()
    calls = []
    monkeypatch.setattr(mod.osp, 'isfile', lambda p: p == mod.VENV_PYTHON or osp.isfile(p))
    monkeypatch.setattr(sys, 'prefix', '/usr')
    monkeypatch.setattr(os, 'execv', lambda exe, argv: calls.append((exe, argv)))
    monkeypatch.delenv('MMDAG_NO_REEXEC', raising=False)
    monkeypatch.setattr(sys, 'argv', ['tools/test.py', 'a.py', 'b.pth'])
    with pytest.raises(SystemExit):   # the fake execv returns: the one-line error follows
        mod.require('no_such_module_xyz')
    assert calls == [(mod.VENV_PYTHON, [mod.VENV_PYTHON, 'tools/test.py', 'a.py', 'b.pth'])]
    assert 'using the project environment' in capsys.readouterr().err
    assert os.environ['MMDAG_NO_REEXEC'] == '1'   # the restarted tool never restarts again


def test_tool_without_its_dependencies_says_so_in_one_line(tmp_path):
    # this Python is the project's own: no restart, one line naming the fix
    (tmp_path / 'mmengine.py').write_text("raise ImportError('hidden')\n")
    res = run_tool(['tools/test.py', 'x.py', 'y.pth'], env=dict(PYTHONPATH=str(tmp_path)),
                   check=False)
    assert res.returncode != 0
    err = res.stderr.strip()
    assert err.count('\n') == 0 and err.startswith('error: mmengine not importable')
    # from the project's .venv: set it up; from another environment (the
    # oldest-stack venv of `make test-oldest`): use the project's
    own = osp.realpath(sys.prefix) == osp.realpath(osp.join(ROOT, '.venv'))
    assert ('make setup' in err) if own else ('.venv/bin/python' in err)
