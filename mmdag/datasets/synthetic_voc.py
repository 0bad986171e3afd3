"""A seeded synthetic dataset in the exact Pascal VOC2012 layout
(``tools/make_synthetic_voc.py``, the demo's and the tests' data).

Produces ``<root>/VOCdevkit/VOC2012/`` with ``JPEGImages/*.jpg``,
``SegmentationClass/*.png`` (palette PNGs with VOC's palette, 255 on object
borders as in VOC), ``Annotations/*.xml`` (boxes, VOC schema) and
``ImageSets/{Segmentation,Main}/{train,val,trainval}.txt``, so the stock
``mmseg.datasets.PascalVOCDataset`` and ``mmdet.datasets.VOCDataset`` read it
unchanged. Objects of several VOC classes, each class with its own shape
family, colour range and texture, are placed on cluttered textured
backgrounds with distractor blobs, noise and partial occlusion; nothing about
the data is tuned to make the attack easy.

The same ``seed`` and sizes write the same files. It needs numpy, OpenCV
and Pillow only, and imports nothing of mmdag: the tool loads it without
``import mmdag``.
"""
import os
import os.path as osp
from xml.etree import ElementTree as ET

import cv2
import numpy as np
from PIL import Image

VOC_CLASSES = ('background', 'aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car',
               'cat', 'chair', 'cow', 'diningtable', 'dog', 'horse', 'motorbike', 'person',
               'pottedplant', 'sheep', 'sofa', 'train', 'tvmonitor')

#: The classes drawn, with (shape, hue range [0,180), texture kind, stripe period).
OBJECTS = {
    'aeroplane': ('cross', (95, 120), 'stripes', 5),
    'bird': ('ellipse', (10, 30), 'spots', 6),
    'car': ('rect', (0, 12), 'checker', 8),
    'cat': ('blob', (150, 175), 'stripes', 9),
    'person': ('triangle', (40, 70), 'rings', 7),
}


def voc_palette() -> list:
    """VOC's 256-entry colour map (bit-interleaved label index)."""
    pal = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal += [r, g, b]
    return pal


def _texture(rng, h, w, kind, period, hue):
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    theta = rng.uniform(0, np.pi)
    u = xx * np.cos(theta) + yy * np.sin(theta)
    if kind == 'stripes':
        t = np.sin(2 * np.pi * u / period)
    elif kind == 'checker':
        v = -xx * np.sin(theta) + yy * np.cos(theta)
        t = np.sign(np.sin(2 * np.pi * u / period) * np.sin(2 * np.pi * v / period))
    elif kind == 'rings':
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        t = np.sin(2 * np.pi * np.hypot(yy - cy, xx - cx) / period)
    else:  # spots
        t = np.zeros((h, w), np.float32)
        for _ in range(int(h * w / (period * period * 2)) + 1):
            cy, cx = rng.uniform(0, h), rng.uniform(0, w)
            t += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (period * 0.6) ** 2)
        t = np.clip(t, 0, 1) * 2 - 1
    hsv = np.empty((h, w, 3), np.float32)
    hsv[..., 0] = hue + 4 * t
    hsv[..., 1] = rng.uniform(120, 220) + 30 * t
    hsv[..., 2] = rng.uniform(110, 200) + 45 * t
    hsv = np.clip(hsv, 0, [179, 255, 255]).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)


def _shape_mask(rng, h, w, shape, cy, cx, size):
    m = np.zeros((h, w), np.uint8)
    a = rng.uniform(0, 180)
    if shape == 'ellipse':
        cv2.ellipse(m, (cx, cy), (size, int(size * rng.uniform(0.5, 0.8))), a, 0, 360, 1, -1)
    elif shape == 'rect':
        box = cv2.boxPoints(((cx, cy), (2 * size, 1.2 * size), a)).astype(np.int32)
        cv2.fillPoly(m, [box], 1)
    elif shape == 'triangle':
        pts = [(cx + size * np.cos(np.radians(a + k * 120)),
                cy + size * np.sin(np.radians(a + k * 120)))
               for k in range(3)]
        cv2.fillPoly(m, [np.array(pts, np.int32)], 1)
    elif shape == 'cross':
        for d in (0, 90):
            box = cv2.boxPoints(((cx, cy), (2 * size, 0.6 * size), a + d)).astype(np.int32)
            cv2.fillPoly(m, [box], 1)
    else:  # blob: a random star-shaped polygon
        k = 9
        ang = np.sort(rng.uniform(0, 2 * np.pi, k))
        rad = size * rng.uniform(0.6, 1.1, k)
        pts = np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], 1).astype(np.int32)
        cv2.fillPoly(m, [pts], 1)
    return m.astype(bool)


def _background(rng, h, w, noise=8.0):
    low = rng.uniform(40, 200, (3, 3, 3)).astype(np.float32)
    bg = cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC)
    for _ in range(rng.integers(3, 7)):  # distractor textures of no class
        hue = rng.uniform(0, 180)
        tex = _texture(rng, h, w, rng.choice(['stripes', 'spots', 'checker', 'rings']),
                       rng.integers(4, 12), hue).astype(np.float32)
        m = _shape_mask(rng, h, w, rng.choice(['ellipse', 'rect', 'blob']),
                        int(rng.uniform(0, h)), int(rng.uniform(0, w)), int(rng.uniform(8, 30)))
        bg[m] = 0.5 * bg[m] + 0.5 * tex[m]
    if noise > 0:
        bg += rng.normal(0, noise, bg.shape)
    return bg


def make_sample(rng, h, w, max_objects=3, noise=8.0):
    """One image (BGR, uint8), its class map (255 on object borders, as VOC's)
    and the boxes ``(class, x1, y1, x2, y2)`` (1-based, as VOC's) of the
    objects that stay visible, drawn from ``rng`` (``np.random.Generator``)."""
    img = _background(rng, h, w, noise)
    seg = np.zeros((h, w), np.uint8)
    objects = []
    names = list(OBJECTS)
    for _ in range(rng.integers(1, max_objects + 1)):
        name = names[rng.integers(len(names))]
        shape, (h0, h1), kind, period = OBJECTS[name]
        size = int(rng.uniform(0.15, 0.32) * min(h, w))
        cy = int(rng.uniform(size * 0.6, h - size * 0.6))
        cx = int(rng.uniform(size * 0.6, w - size * 0.6))
        m = _shape_mask(rng, h, w, shape, cy, cx, size)
        if m.sum() < 40:
            continue
        tex = _texture(rng, h, w, kind, period * rng.uniform(0.8, 1.25), rng.uniform(h0, h1))
        img[m] = tex[m].astype(np.float32)
        if noise > 0:
            img[m] += rng.normal(0, noise * 0.75, (int(m.sum()), 3))
        seg[m] = VOC_CLASSES.index(name)
        objects.append((name, m))
    # boxes from what stays visible (later objects occlude earlier ones)
    boxes = []
    for name, m in objects:
        vis = m & (seg == VOC_CLASSES.index(name))
        ys, xs = np.nonzero(vis)
        if len(xs) < 30:
            continue
        boxes.append((name, xs.min() + 1, ys.min() + 1, xs.max() + 1, ys.max() + 1))
    # VOC marks object borders 'void' (255)
    edges = np.zeros_like(seg)
    for c in np.unique(seg):
        mc = (seg == c).astype(np.uint8)
        gradient = cv2.morphologyEx(mc, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))
        edges |= (gradient > 0).astype(np.uint8)
    seg_out = seg.copy()
    seg_out[(edges > 0) & (cv2.dilate((seg > 0).astype(np.uint8), np.ones((3, 3))) > 0)] = 255
    return np.clip(img, 0, 255).astype(np.uint8), seg_out, boxes


def write_xml(path, name, w, h, boxes):
    """The VOC annotation of image ``name``: its size and its boxes."""
    ann = ET.Element('annotation')
    ET.SubElement(ann, 'folder').text = 'VOC2012'
    ET.SubElement(ann, 'filename').text = name + '.jpg'
    size = ET.SubElement(ann, 'size')
    for k, v in (('width', w), ('height', h), ('depth', 3)):
        ET.SubElement(size, k).text = str(v)
    ET.SubElement(ann, 'segmented').text = '1'
    for cls, x1, y1, x2, y2 in boxes:
        obj = ET.SubElement(ann, 'object')
        ET.SubElement(obj, 'name').text = cls
        ET.SubElement(obj, 'pose').text = 'Unspecified'
        ET.SubElement(obj, 'truncated').text = '0'
        ET.SubElement(obj, 'difficult').text = '0'
        bb = ET.SubElement(obj, 'bndbox')
        for k, v in (('xmin', x1), ('ymin', y1), ('xmax', x2), ('ymax', y2)):
            ET.SubElement(bb, k).text = str(int(v))
    ET.ElementTree(ann).write(path)


def generate(root, num_train=240, num_val=40, width=160, height=120, seed=0, noise=8.0):
    """Write ``num_train`` then ``num_val`` images (``2012_000000``, ...) and
    their labels under ``root/VOCdevkit/VOC2012``, the split lists, and
    ``root/READY`` last (the set is complete); return the VOC2012 folder."""
    voc = osp.join(root, 'VOCdevkit', 'VOC2012')
    dirs = {k: osp.join(voc, k) for k in ('JPEGImages', 'SegmentationClass', 'Annotations',
                                          'ImageSets/Segmentation', 'ImageSets/Main')}
    for d in dirs.values():
        os.makedirs(d, exist_ok=True)
    pal = voc_palette()
    rng = np.random.default_rng(seed)
    splits = {'train': [], 'val': []}
    for k in range(num_train + num_val):
        split = 'train' if k < num_train else 'val'
        name = f'2012_{k:06d}'
        img, seg, boxes = make_sample(rng, height, width, noise=noise)
        cv2.imwrite(osp.join(dirs['JPEGImages'], name + '.jpg'), img,
                    [cv2.IMWRITE_JPEG_QUALITY, 95])
        png = Image.fromarray(seg, mode='P')
        png.putpalette(pal)
        png.save(osp.join(dirs['SegmentationClass'], name + '.png'))
        write_xml(osp.join(dirs['Annotations'], name + '.xml'), name, width, height, boxes)
        splits[split].append(name)
    splits['trainval'] = splits['train'] + splits['val']
    for split, names in splits.items():
        for sub in ('Segmentation', 'Main'):
            with open(osp.join(voc, 'ImageSets', sub, split + '.txt'), 'w') as f:
                f.write('\n'.join(names) + '\n')
    with open(osp.join(root, 'READY'), 'w') as f:  # written last: the set is complete
        f.write(f'{num_train} {num_val} {width} {height} {seed}\n')
    return voc
