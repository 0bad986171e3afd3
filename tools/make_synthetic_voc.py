"""Write a seeded synthetic dataset in the exact Pascal VOC2012 layout.

    python tools/make_synthetic_voc.py data/synthetic_voc --num-train 240 --num-val 40

Produces ``<root>/VOCdevkit/VOC2012/`` (images, class maps, box annotations
and split lists), which the stock ``mmseg.datasets.PascalVOCDataset`` and
``mmdet.datasets.VOCDataset`` read unchanged: :mod:`mmdag.datasets.synthetic_voc`,
which writes it.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from _require import import_standalone, require  # noqa: E402

require('cv2', 'numpy', 'PIL')
# numpy, OpenCV and Pillow only: not `import mmdag` (torch, seconds)
synthetic_voc = import_standalone('mmdag.datasets.synthetic_voc')


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('root', help='output directory (VOCdevkit/VOC2012 is created inside)')
    p.add_argument('--num-train', type=int, default=240)
    p.add_argument('--num-val', type=int, default=40)
    p.add_argument('--width', type=int, default=160)
    p.add_argument('--height', type=int, default=120)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--noise', type=float, default=8.0,
                   help='std of the sensor-like Gaussian noise (grey levels). Defaults to 8')
    a = p.parse_args(argv)
    if a.num_train < 0 or a.num_val < 1 or a.width < 32 or a.height < 32:
        sys.exit('error: need --num-val >= 1 and images of at least 32x32 pixels')
    voc = synthetic_voc.generate(a.root, a.num_train, a.num_val, a.width, a.height, a.seed, a.noise)
    print(f'synthetic VOC written to {voc} ({a.num_train} train, {a.num_val} val)')


if __name__ == '__main__':
    main()
