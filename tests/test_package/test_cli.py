"""The `mmdag` command and config paths, from the clone (fast).

The installed wheel is checked end to end by test_wheel.py (slow)."""
import os
import os.path as osp
import subprocess
import sys

import pytest

import mmdag
from mmdag import cli, paths
from conftest import ROOT


def test_project_root_is_the_clone_or_the_package_mim():
    root = paths.project_root()
    assert osp.isfile(osp.join(root, 'configs', '_base_', 'dag_seg.py'))
    assert osp.isfile(osp.join(root, 'tools', 'test.py'))
    assert osp.realpath(root) in (osp.realpath(ROOT), osp.realpath(paths.MIM_DIR))


def test_resolve_config(tmp_path, monkeypatch):
    own = osp.join(paths.project_root(), 'configs', 'dag', 'ssd300_voc0712_dag.py')
    assert osp.samefile(paths.resolve_config('mmdag::dag/ssd300_voc0712_dag.py'), own)
    # configs/... from another directory: mmdag's own
    monkeypatch.chdir(tmp_path)
    assert osp.samefile(paths.resolve_config('configs/dag/ssd300_voc0712_dag.py'), own)
    # a user's file of the same relative name wins
    mine = tmp_path / 'configs' / 'dag' / 'ssd300_voc0712_dag.py'
    mine.parent.mkdir(parents=True)
    mine.write_text('x = 1\n')
    rel = 'configs/dag/ssd300_voc0712_dag.py'
    assert paths.resolve_config(rel) == rel
    # anything else is left for the caller to report
    assert paths.resolve_config('nope.py') == 'nope.py'
    assert paths.resolve_config('configs/nope.py') == 'configs/nope.py'


def test_mmdag_scope_base_config(tmp_path):
    """`_base_ = [..., 'mmdag::_base_/dag_seg.py']` resolves through mmengine
    and its hooks build in the mmdag scope (the README's recipe for a zoo
    config)."""
    from mmengine.config import Config
    from mmengine.registry import HOOKS
    cfg_file = tmp_path / 'fcn_dag.py'
    cfg_file.write_text(
        f"_base_ = [{osp.join(ROOT, 'configs/demo/fcn_tiny_synthetic-voc.py')!r}, "
        "'mmdag::_base_/dag_seg.py']\n")
    cfg = Config.fromfile(str(cfg_file))
    hooks = [HOOKS.build(h) for h in cfg.custom_hooks]
    assert [type(h).__name__ for h in hooks] == ['AttackHook', 'AttackFigureHook',
                                                 'AttackReportHook', 'AttackResumeHook',
                                                 'CheckpointCheckHook']
    assert cfg.model.type == 'EncoderDecoder'


def test_register_config_scope_touches_only_mmdag():
    from mmengine.config import config as config_module
    from mmengine.config.utils import MODULE2PACKAGE
    assert MODULE2PACKAGE['mmdag'] == 'mmdag'
    get = config_module.get_installed_path
    assert get('mmdag') == osp.dirname(mmdag.__file__)
    assert get('mmseg') == get.__wrapped__('mmseg')
    # idempotent: a second import wraps nothing twice
    paths.register_config_scope()
    assert config_module.get_installed_path is get


def test_cli_dispatch(capsys):
    assert cli.main(['--version']) == 0
    assert mmdag.__version__ in capsys.readouterr().out
    assert cli.main(['configs']) == 0
    listed = capsys.readouterr().out.split()
    assert 'mmdag::_base_/dag_seg.py' in listed and 'mmdag::dag/ssd300_voc0712_dag.py' in listed
    assert cli.main(['frobnicate']) == 2
    assert 'unknown command' in capsys.readouterr().err
    assert cli.main(['dist-test', 'only-a-config']) == 2


def test_cli_test_errors_like_the_tool(tmp_path):
    """`python -m mmdag test` is tools/test.py: same one-line errors, from
    any directory, and mmdag:: configs found."""
    env = dict(os.environ, PYTHONWARNINGS='ignore', PYTHONPATH=ROOT)
    res = subprocess.run([sys.executable, '-m', 'mmdag', 'test', 'missing.py', 'x.pth'],
                         cwd=tmp_path, env=env, capture_output=True, text=True)
    assert res.returncode == 2 and 'config missing.py not found' in res.stderr
    res = subprocess.run([sys.executable, '-m', 'mmdag', 'test',
                          'mmdag::demo/fcn_tiny_synthetic-voc_dag.py', 'nope.pth'],
                         cwd=tmp_path, env=env, capture_output=True, text=True)
    assert res.returncode == 2 and 'checkpoint nope.pth not found' in res.stderr


@pytest.mark.parametrize('tool', sorted(cli.TOOLS.values()))
def test_every_command_has_its_tool(tool):
    assert osp.isfile(paths.tool_path(tool))
