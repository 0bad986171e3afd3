"""The supported OpenMMLab stack, checked at ``import mmdag`` (mmdag.stack)."""
import subprocess
import sys

import pytest

from mmdag import stack
from conftest import ROOT


def test_versions_order_as_pip_orders_them():
    v = stack.version_tuple
    assert v('2.1.2+cu121') == v('2.1.2') and v('2.13.0+cpu') > v('2.1.0')
    assert v('2.0.0rc4') < v('2.0.0') < v('2.1') == v('2.1.0') < v('2.10.0')
    with pytest.raises(ValueError):
        v('latest')


def test_this_environment_is_supported_and_each_bound_is_enforced():
    found = stack.installed_versions()
    stack.check_stack(found)   # the pinned stack the suite runs on
    cases = {'mmcv': ('2.2.0', 'needs mmcv>=2.0.0,<2.2.0; this environment has mmcv 2.2.0: '
                               'pip install "mmcv>=2.0.0,<2.2.0"'),
             'torch': ('2.0.1+cu118', 'needs torch>=2.1.0; this environment has torch '
                                      '2.0.1+cu118: install a torch >= 2.1 build'),
             'mmdet': ('3.2.0', 'needs mmdet>=3.3.0,<3.4.0; this environment has mmdet 3.2.0'),
             'mmengine': ('1.0.0', 'needs mmengine>=0.10.0,<1.0.0'),
             'mmsegmentation': (None, 'needs mmsegmentation>=1.2.0,<1.3.0, which is not '
                                      'installed: pip install')}
    for name, (version, line) in cases.items():
        with pytest.raises(stack.UnsupportedStackError) as e:
            stack.check_stack(dict(found, **{name: version}))
        assert line in str(e.value) and '\n' not in str(e.value), (name, str(e.value))
    # the oldest supported releases and OpenMMLab's prebuilt mmcv pass
    stack.check_stack(dict(torch='2.1.2+cu121', mmengine='0.10.4', mmcv='2.1.0', mmdet='3.3.0',
                           mmsegmentation='1.2.2'))


FAKE_MMCV = ("import importlib.metadata as m; real = m.version; "
             "m.version = lambda n: '2.2.0' if n == 'mmcv' else real(n); ")


def test_import_mmdag_and_the_tools_refuse_an_unsupported_stack_in_one_line():
    res = subprocess.run([sys.executable, '-c', FAKE_MMCV + 'import mmdag'], cwd=ROOT,
                         capture_output=True, text=True)
    assert res.returncode == 1 and 'UnsupportedStackError: mmdag' in res.stderr
    tool = ("import runpy, sys; sys.path.insert(0, 'tools'); "
            "sys.argv = ['tools/test.py', 'cfg.py', 'ckpt.pth']; "
            "runpy.run_path('tools/test.py', run_name='__main__')")
    res = subprocess.run([sys.executable, '-c', FAKE_MMCV + tool], cwd=ROOT, capture_output=True,
                         text=True)
    assert res.returncode == 1 and res.stderr.startswith('error: mmdag ')
    assert res.stderr.strip().count('\n') == 0 and 'mmcv 2.2.0' in res.stderr, res.stderr


def test_a_package_without_metadata_is_read_from_its_module(tmp_path):
    # mmcv built in place and put on PYTHONPATH (the GPU check does this) has
    # no distribution metadata: its module's __version__ counts
    pkg = tmp_path / 'mmcv'
    pkg.mkdir()
    (pkg / '__init__.py').write_text("__version__ = '2.1.0'\n")
    code = ("import importlib.metadata as m; real = m.version\n"
            "def version(n):\n"
            "    if n == 'mmcv':\n"
            "        raise m.PackageNotFoundError(n)\n"
            "    return real(n)\n"
            "m.version = version\n"
            f"import sys; sys.path.insert(0, {str(tmp_path)!r})\n"
            "from mmdag import stack; v = stack.installed_versions(); print(v['mmcv'])\n")
    res = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0 and res.stdout.strip() == '2.1.0', res.stderr[-2000:]
