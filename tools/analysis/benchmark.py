"""Speed of a DAG iteration, side by side in one run, on one model and batch.

    python tools/analysis/benchmark.py [--config CFG] [--checkpoint CKPT]
        [--data-root DIR] [--num-images 8] [--iters 20] [--gamma 0.5]
        [--methods floor mmdag dag_class plain adv_lib] [--device cpu|cuda]

Methods: ``floor`` (one forward and backward of the target logits, the least
a gradient attack pays per iteration), ``mmdag`` (the public API's
``attack_batch``), ``dag_class``, ``plain`` (Algorithm 1, image by image),
``adv_lib``, ``stock_roialign`` and the budgeted attacks; for each, ms per
image-iteration, its ratio to the floor, images per second and peak memory,
then the speed goals. What each method times and each goal:
:mod:`mmdag.benchmark.speed`, which does the work.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from _require import require  # noqa: E402

require('torch', 'mmengine')
from mmengine.config import DictAction  # noqa: E402

from mmdag.benchmark.speed import DEFAULT_METHODS, METHODS, run  # noqa: E402
from mmdag.errors import MMDagError, fail  # noqa: E402

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEFAULT_CONFIG = osp.join(ROOT, 'configs', 'demo', 'fcn_tiny_synthetic-voc.py')


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='mmdag: DAG iteration speed, side by side')
    p.add_argument('--config', default=DEFAULT_CONFIG,
                   help="a config file, or a zoo config of an installed package: "
                   "'mmseg::fcn/fcn_r50-d8_4xb4-20k_voc12aug-512x512.py'")
    p.add_argument('--checkpoint', default=None, help='default: random weights')
    p.add_argument('--data-root', default=None, help='test data root (default: the config\'s)')
    p.add_argument('--num-images', type=int, default=8)
    p.add_argument('--iters', type=int, default=20)
    p.add_argument('--gamma', type=float, default=0.5)
    p.add_argument('--methods', nargs='+', default=list(DEFAULT_METHODS), choices=METHODS)
    p.add_argument('--device', default=None, help="'cpu' or 'cuda' (default: cuda if present)")
    p.add_argument('--repeats', type=int, default=1, help='time each method this many times, '
                   'keep the fastest')
    p.add_argument('--amp', action='store_true',
                   help='run under autocast (float16 on CUDA, bfloat16 on the CPU): '
                   'changes the numbers')
    p.add_argument('--channels-last', action='store_true',
                   help='model weights in channels_last memory format')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                   help='override config settings (key=value), as in tools/test.py')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        return run(args)
    except MMDagError as e:
        fail(str(e))


if __name__ == '__main__':
    main()
