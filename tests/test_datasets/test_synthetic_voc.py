"""The synthetic VOC2012-format set (mmdag.datasets.synthetic_voc,
tools/make_synthetic_voc.py): its layout, labels and boxes, the same files
for the same seed, and a tool that needs neither torch nor mmdag."""
import ast
import os
import os.path as osp
import subprocess
import sys
from xml.etree import ElementTree as ET

import numpy as np
from PIL import Image

from mmdag.datasets.synthetic_voc import OBJECTS, VOC_CLASSES, generate, voc_palette
from conftest import ROOT


def _files(root):
    out = {}
    for d, _, names in os.walk(root):
        for n in names:
            with open(osp.join(d, n), 'rb') as f:
                out[osp.relpath(osp.join(d, n), root)] = f.read()
    return out


def test_the_layout_labels_and_boxes(tmp_path):
    voc = generate(str(tmp_path), num_train=2, num_val=1, width=64, height=48, seed=1)
    assert voc == osp.join(str(tmp_path), 'VOCdevkit', 'VOC2012')
    names = ['2012_000000', '2012_000001', '2012_000002']
    for sub in ('Segmentation', 'Main'):
        split = {s: open(osp.join(voc, 'ImageSets', sub, s + '.txt')).read().split()
                 for s in ('train', 'val', 'trainval')}
        assert split == dict(train=names[:2], val=names[2:], trainval=names)
    assert open(tmp_path / 'READY').read() == '2 1 64 48 1\n'
    drawn = {VOC_CLASSES.index(c) for c in OBJECTS}
    for name in names:
        img = Image.open(osp.join(voc, 'JPEGImages', name + '.jpg'))
        assert img.size == (64, 48) and img.mode == 'RGB'
        seg = Image.open(osp.join(voc, 'SegmentationClass', name + '.png'))
        assert seg.mode == 'P' and seg.getpalette()[:6] == [0, 0, 0, 128, 0, 0]
        assert set(np.unique(np.array(seg)).tolist()) <= drawn | {0, 255}
        ann = ET.parse(osp.join(voc, 'Annotations', name + '.xml')).getroot()
        assert ann.find('filename').text == name + '.jpg'
        assert (ann.find('size/width').text, ann.find('size/height').text) == ('64', '48')
        for obj in ann.iter('object'):
            assert obj.find('name').text in OBJECTS
            x1, y1, x2, y2 = (int(obj.find(f'bndbox/{k}').text)
                              for k in ('xmin', 'ymin', 'xmax', 'ymax'))
            assert 1 <= x1 < x2 <= 64 and 1 <= y1 < y2 <= 48


def test_the_same_seed_writes_the_same_files(tmp_path):
    kw = dict(num_train=1, num_val=1, width=48, height=40)
    generate(str(tmp_path / 'a'), seed=5, **kw)
    generate(str(tmp_path / 'b'), seed=5, **kw)
    generate(str(tmp_path / 'c'), seed=6, **kw)
    a, b, c = (_files(str(tmp_path / x)) for x in 'abc')
    assert a == b and len(a) == 2 + 2 + 2 + 6 + 1
    assert a['VOCdevkit/VOC2012/JPEGImages/2012_000000.jpg'] != \
        c['VOCdevkit/VOC2012/JPEGImages/2012_000000.jpg']


def test_voc_palette():
    pal = voc_palette()
    assert len(pal) == 3 * 256
    # VOC's colours: aeroplane, car, person
    assert pal[3:6] == [128, 0, 0] and pal[3 * 7:3 * 8] == [128, 128, 128]
    assert pal[3 * 15:3 * 16] == [192, 128, 128]


def test_the_module_imports_nothing_of_mmdag():
    path = osp.join(ROOT, 'mmdag', 'datasets', 'synthetic_voc.py')
    tree = ast.parse(open(path).read())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert {m.split('.')[0] for m in names} - set(sys.stdlib_module_names) == \
        {'cv2', 'numpy', 'PIL'}


def test_the_tool_needs_neither_torch_nor_mmdag(tmp_path):
    # the tool loads its module without `import mmdag` (torch, seconds)
    res = subprocess.run(
        [sys.executable, '-c', 'import sys; sys.path.insert(0, "tools"); '
         'import make_synthetic_voc as t; t.main([sys.argv[1], "--num-train", "0", '
         '"--num-val", "1", "--width", "32", "--height", "32"]); '
         'print(sorted(m for m in ("torch", "mmdag", "mmengine") if m in sys.modules))',
         str(tmp_path)], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [
        f"synthetic VOC written to {tmp_path / 'VOCdevkit' / 'VOC2012'} (0 train, 1 val)", '[]']
