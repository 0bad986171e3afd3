"""The layers import downwards only: attacks (plain PyTorch) <- targets <-
engine/evaluation <- apis <- benchmark and tools. Checked on the source's
import statements (module level and inside functions alike)."""
import ast
import os
import os.path as osp

import pytest

from conftest import ROOT

PKG = osp.join(ROOT, 'mmdag')

#: room -> the mmdag rooms (and OpenMMLab packages) it must not import
FORBIDDEN = {
    'attacks': ('mmdag.targets', 'mmdag.engine', 'mmdag.evaluation', 'mmdag.apis',
                'mmdag.benchmark', 'mmengine', 'mmdet', 'mmseg', 'mmcv'),
    'targets': ('mmdag.engine', 'mmdag.evaluation', 'mmdag.apis', 'mmdag.benchmark'),
    'engine': ('mmdag.apis', 'mmdag.benchmark'),
    'evaluation': ('mmdag.apis', 'mmdag.benchmark'),
    'apis': ('mmdag.benchmark', ),
}


def imports(path):
    tree = ast.parse(open(path).read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


@pytest.mark.parametrize('room', sorted(FORBIDDEN))
def test_no_import_goes_back_up_the_layers(room):
    bad = []
    for dirpath, _, names in os.walk(osp.join(PKG, room)):
        for n in names:
            if not n.endswith('.py'):
                continue
            path = osp.join(dirpath, n)
            rel = osp.relpath(path, PKG)
            for mod in imports(path):
                if any(mod == f or mod.startswith(f + '.') for f in FORBIDDEN[room]):
                    bad.append(f'{rel}: {mod}')
    assert not bad
