"""The mmdag demo: DAG on real MMSegmentation and MMDetection models, end to end.

    make demo            # = python tools/demo.py

1. writes a synthetic VOC2012-format dataset (tools/make_synthetic_voc.py),
2. trains a tiny FCN and a tiny Faster R-CNN on it with the stock runners
   (tools/train.py), cached,
3. attacks their val sets through tools/test.py and the DAG configs,
4. prints Table-1-style rows and where the reports and pictures are.

Every step is an ordinary command that a user can run by hand; each is
skipped when its output is already there and up to date. Data and outputs go
below the current directory (``mmdag demo`` runs it from anywhere). The
steps: :mod:`mmdag.benchmark.demo_run`.
"""
import argparse
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))   # the clone, or mmdag's .mim
sys.path.insert(0, ROOT)
from _require import require  # noqa: E402

require('torch', 'mmengine', 'cv2')
from mmdag.benchmark.demo_run import TASKS, run_demo  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description='mmdag demo')
    p.add_argument('--tasks', nargs='+', choices=sorted(TASKS), default=['seg', 'det'])
    p.add_argument('--data-root', default='data/synthetic_voc')
    p.add_argument('--work-dir', default='work_dirs/demo')
    p.add_argument('--num-train', type=int, default=240)
    p.add_argument('--num-val', type=int, default=40)
    p.add_argument('--train-iters', type=int, nargs='+', default=None,
                   help="training iterations per task, in --tasks order (default: the configs')")
    p.add_argument('--attack-options', nargs='*', default=[],
                   help='DAG arguments passed to tools/test.py, e.g. max_iters=50')
    p.add_argument('--launcher-procs', type=int, default=None,
                   help='attack with this many processes (torchrun, gloo on the CPU); '
                   'default: 1 for seg, 2 for det')
    p.add_argument('--det-val-images', type=int, default=None,
                   help='attack only the first N val images with the detector (default 16; '
                   '0: all)')
    p.add_argument('--train-only', action='store_true',
                   help='make the data and train the models (cached), attack nothing: what '
                   'the zoo benchmark\'s demo list (configs/benchmark/demo.py) needs')
    run_demo(p.parse_args(argv), ROOT)


if __name__ == '__main__':
    main()
