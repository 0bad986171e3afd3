"""Benchmark DAG over a list of models: Table 1 (ORIG / ADVR / PERM) per model.

    python tools/zoo_benchmark.py [LIST] [--work-dir DIR] [--launcher pytorch --gpus 8]

LIST is a model list (configs/benchmark/voc_zoo.py, the default: the zoo
models of configs/dag/ with their checkpoint URLs; configs/benchmark/demo.py:
the demo models). Every model is attacked by ``tools/test.py`` (the stock
test loop with mmdag's hook), in ``DIR/<name>``, on one device or under a
launcher. A model finished with the same settings is skipped; a killed one
is resumed (``tools/test.py --resume``). At the end, in DIR:

- ``benchmark.md``, ``benchmark.csv``, ``benchmark.json``: one row per model
  (ORIG, ADVR, PERM, iterations mean and median, p, L-inf, success, seconds
  per image, device, date, versions, settings);
- ``pictures/``: per model a convergence plot, a histogram of iterations and
  a Figure-1 picture; ``variants.png``, ORIG / ADVR / PERM of every model;
- with ``--transfer``: every model's perturbations applied to every other
  model of the same task, and the transfer matrix (``transfer.md``/``.json``).

The work is :func:`mmdag.benchmark.zoo_run.run_benchmark`'s.
"""
import argparse
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TEST_TOOL = osp.join(osp.dirname(osp.abspath(__file__)), 'test.py')
sys.path.insert(0, ROOT)
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from _require import require  # noqa: E402

require('torch', 'mmengine')

DEFAULT_LIST = 'configs/benchmark/voc_zoo.py'


def parse_args(argv=None):
    from mmengine.config import DictAction
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('list', nargs='?', default=DEFAULT_LIST,
                   help=f'model list (.py/.json/.yaml with `models`); default {DEFAULT_LIST}')
    p.add_argument('--work-dir', help='default: work_dirs/zoo_benchmark/<list name>')
    p.add_argument('--models', nargs='+', metavar='NAME', help='only these entries of the list')
    p.add_argument('--attack-options', nargs='+', action=DictAction, default={},
                   help='DAG arguments for every model (over the list\'s), e.g. max_iters=50')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                   help='config overrides for every model (over the list\'s)')
    p.add_argument('--attacks', nargs='+', metavar='ATTACK',
                   help='budgeted attacks to run on every segmentation model besides DAG, in '
                   'one worst-case run per model (e.g. pgd segpgd): a column per attack and '
                   'the worst case per image (over the list\'s `attacks`; `none`: none)')
    p.add_argument('--det-attacks', nargs='+', metavar='ATTACK',
                   help='the same for every detector (e.g. detpgd togvanishing), over the '
                   "list's `det_attacks`; `none`: none")
    p.add_argument('--budget-options', nargs='+', action=DictAction, default={},
                   help='settings of those attacks (over the list\'s `budget_options`), e.g. '
                   'epsilon=4 max_iters=20')
    p.add_argument('--num-figures', type=int, default=1,
                   help='Figure-1 pictures saved per model (default 1)')
    p.add_argument('--transfer', action='store_true',
                   help='also apply each model\'s perturbations to every other model of its '
                   'task (the runs save their perturbations)')
    p.add_argument('--launcher', choices=['none', 'pytorch', 'slurm'], default='none')
    p.add_argument('--gpus', type=int, default=1,
                   help='processes per model under --launcher (one per GPU)')
    p.add_argument('--port', type=int, default=29533, help='torchrun master port')
    p.add_argument('--partition', help='slurm partition (--launcher slurm)')
    p.add_argument('--srun-args', default='',
                   help='more srun arguments (--launcher slurm), e.g. --srun-args="--qos=high"')
    p.add_argument('--verbose', action='store_true',
                   help='show the runs\' output (default: in DIR/<name>/benchmark.log)')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from mmdag.benchmark.zoo_run import run_benchmark
    from mmdag.errors import MMDagError
    try:
        return run_benchmark(args, TEST_TOOL, ROOT)
    except MMDagError as e:
        sys.exit(f'error: {e}')


if __name__ == '__main__':
    sys.exit(main())
