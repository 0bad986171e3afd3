"""Test (and attack) an MMSegmentation / MMDetection model.

The OpenMMLab ``tools/test.py`` with two additions: ``--attack NAME`` (dag,
pgd, segpgd, ..., see --help) adds ``mmdag.AttackHook`` and wraps the test
evaluator in ``mmdag.AttackMetric`` (a config that already names them needs
no flag), and ``--attack-options`` sets the attack's arguments. One run
reports ORIG / ADVR / PERM of the config's metric, the attack statistics,
and writes ``<work_dir>/attack_report.json``.

    python tools/test.py CONFIG CHECKPOINT --attack dag [--attack-options max_iters=50]
    bash tools/dist_test.sh CONFIG CHECKPOINT GPUS --attack dag
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from _require import require  # noqa: E402

require('torch', 'mmengine')
from mmdag.apis.test_tool import (build_cfg, build_runner, check_inputs,  # noqa: E402,F401
                                  check_work_dir, is_detection, looks_like_checkpoint,
                                  setup_cpu_distributed, shutdown_distributed)
from mmdag.contract import REPORT_FILE  # noqa: E402
from mmdag.errors import MMDagError, fail  # noqa: E402


def parse_args(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description='mmdag: test (and attack) a model')
    parser.add_argument('config', help='test config: a path, mmdag::dag/<name>.py, or '
                        'configs/... (mmdag\'s own, from any directory)')
    parser.add_argument('checkpoint', help='checkpoint: a local path, an http(s) URL or a zoo name '
                        '(open-mmlab://, openmmlab://, mmcls://, torchvision://, modelzoo://)')
    from mmdag.attacks import attack_names
    parser.add_argument('--attack', choices=[*attack_names(), 'none'], default=None,
                        help="an attack of mmdag's ATTACKS registry adds the attack hook and "
                        "metric wrapper; 'none' tests clean. Default: whatever the config says")
    parser.add_argument('--attack-options', nargs='+', action=DictAction, default={},
                        help="the attack's arguments, e.g. max_iters=50 gamma=0.5 (dag), "
                        'epsilon=4 max_iters=20 (pgd), attacks=pgd,segpgd epsilon=4 (worstcase)')
    parser.add_argument('--targets-options', nargs='+', action=DictAction, default={},
                        metavar='KEY=VALUE',
                        help='target adapter arguments, merged into the attack hook\'s targets '
                             '(e.g. use_gt=False, score_thr=0.01): the hook is found by its '
                             'type, wherever it sits among the config\'s custom_hooks')
    parser.add_argument('--hook-options', nargs='+', action=DictAction, default={},
                        metavar='KEY=VALUE',
                        help='other AttackHook arguments (e.g. log_interval=5), set on the '
                             'hook found by its type')
    parser.add_argument('--epsilons', type=float, nargs='+', metavar='EPS', default=None,
                        help='an epsilon sweep in one run: the attack at each of these L-inf '
                        'budgets (0..255 scale, e.g. 0.25 0.5 1 2 4 8); the report holds the '
                        'curve (a table and attack_curve.png)')
    parser.add_argument('--num-figures', type=int, default=None,
                        help='save this many Figure-1-style pictures to <work_dir>/figures')
    parser.add_argument('--save-perturbations', action='store_true',
                        help='write each perturbation to <work_dir>/perturbations/ '
                        '(transfer studies)')
    parser.add_argument('--perturbations', metavar='DIR', nargs='+',
                        help='transfer: apply the perturbations saved in DIR instead of attacking '
                        '(several DIRs: their sum, r_A + r_B)')
    parser.add_argument('--resize-perturbations', action='store_true',
                        help='transfer: resize saved perturbations whose input frame differs '
                        'from this model\'s (refused otherwise)')
    parser.add_argument('--resume', action='store_true',
                        help='continue the killed run of this --work-dir: the images it '
                        'finished are not attacked again (same settings required)')
    parser.add_argument('--work-dir', help='directory for logs, attack_report.json and figures')
    parser.add_argument('--out', type=str,
                        help='save the ADVR (clean with --attack none) predictions: mmseg, a '
                        'directory of result images; mmdet, a .pkl file of the results')
    parser.add_argument('--trust-checkpoint', action='store_true',
                        help='load CHECKPOINT (the path, URL or zoo name given) with '
                        'weights_only=False: needed only for a file holding more than weights; '
                        'it may run code stored in the file. A URL or zoo name is trusted as '
                        'downloaded from its URL, not as a cached copy holding more than weights '
                        '(that copy is moved aside and downloaded again)')
    parser.add_argument('--allow-partial-checkpoint', action='store_true',
                        help='run even when the checkpoint leaves much of the model unset '
                        '(missing keys or other shapes); refused by default')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def main(argv=None):
    args = parse_args(argv)
    from mmdag.apis.preflight import check_dataset
    try:
        check_inputs(args)
        cfg = build_cfg(args)
        problem = check_dataset(cfg)
        if problem:
            fail(problem)
        if args.out is not None and is_detection(cfg) and not args.out.endswith(
                ('.pkl', '.pickle')):
            fail(f'--out {args.out}: for a detection config --out is the .pkl file to dump the '
                 'results to (e.g. --out results.pkl)')
        check_work_dir(cfg.work_dir)
    except MMDagError as e:
        fail(str(e))
    if args.launcher != 'none':
        setup_cpu_distributed(cfg)

    from mmengine.runner import Runner

    from mmdag.checkpoint import safe_loading, trust
    from mmdag.summary import format_table
    if args.trust_checkpoint:
        trust(args.checkpoint)
    # every checkpoint the run loads (one a model loads while it is built, too) goes
    # through mmdag's weights-only loaders; CheckpointCheckHook does it for load_from
    with safe_loading():
        try:
            runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else build_runner(cfg)
        except Exception as e:  # unknown types, bad arguments: one line, the cause named
            if os.environ.get('MMDAG_DEBUG'):
                raise
            fail(f'cannot build the runner from {args.config}: {type(e).__name__}: {e} '
                 '(set MMDAG_DEBUG=1 for the traceback)')
        if args.out is not None and is_detection(cfg):
            from mmdet.evaluation import DumpDetResults
            runner.test_evaluator.metrics.append(DumpDetResults(out_file_path=args.out))
        try:
            metrics = runner.test()
        except MMDagError as e:
            fail(str(e))
    from mmengine.dist import is_main_process
    if is_main_process() and any(k.startswith('advr/') for k in metrics):
        # the paper's scale is DAG's: another attack's table goes without it
        from mmdag.attacks import DAG
        from mmdag.engine import AttackHook
        dag = any(isinstance(h, AttackHook) and isinstance(h.primary, DAG) for h in runner.hooks)
        print(format_table({osp.splitext(osp.basename(args.config))[0]: metrics},
                           reference=dag))
        print(f'report: {osp.join(cfg.work_dir, REPORT_FILE)}')
    shutdown_distributed()
    return metrics


if __name__ == '__main__':
    main()
