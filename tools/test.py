"""Test (and attack) an MMSegmentation / MMDetection model with DAG.

The OpenMMLab ``tools/test.py`` with two additions: ``--attack dag`` adds
``mmdag.DAGAttackHook`` and wraps the test evaluator in ``mmdag.DAGMetric``
(a config that already names them needs no flag), and ``--attack-options``
sets DAG's arguments. One run reports ORIG / ADVR / PERM of the config's
metric, the attack statistics, and writes ``<work_dir>/dag_report.json``.

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
from mmdag.errors import fail  # noqa: E402


def parse_args(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description='mmdag: test (and DAG-attack) a model')
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
                        help='target adapter arguments, merged into the DAG hook\'s targets '
                             '(e.g. use_gt=False, score_thr=0.01): the hook is found by its '
                             'type, wherever it sits among the config\'s custom_hooks')
    parser.add_argument('--hook-options', nargs='+', action=DictAction, default={},
                        metavar='KEY=VALUE',
                        help='other DAGAttackHook arguments (e.g. log_interval=5), set on the '
                             'hook found by its type')
    parser.add_argument('--epsilons', type=float, nargs='+', metavar='EPS', default=None,
                        help='an epsilon sweep in one run: the attack at each of these L-inf '
                        'budgets (0..255 scale, e.g. 0.25 0.5 1 2 4 8); the report holds the '
                        'curve (a table and dag_curve.png)')
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
    parser.add_argument('--work-dir', help='directory for logs, dag_report.json and figures')
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


def check_inputs(args) -> None:
    """Catch the usual mistakes before anything is built or written."""
    from mmdag.paths import resolve_config
    args.config = resolve_config(args.config)   # mmdag::..., or configs/... from anywhere
    if not osp.isfile(args.config):
        fail(f'config {args.config} not found: pass the path of a config file '
             '(e.g. configs/dag/fcn_r50-d8_4xb4-20k_voc12aug-512x512_dag.py)')
    from mmdag import checkpoint as ckpt
    ck = args.checkpoint
    if '://' in ck and not ck.startswith(ckpt.URL_SCHEMES) and not osp.isfile(ck):
        fail(ckpt.unsupported_scheme_message(ck))
    if ck.startswith(ckpt.ZOO_SCHEMES):   # a name the tables lack, a file not under mmengine's home
        try:
            target, is_url = ckpt.resolve_zoo_name(ck, warn=False)
        except ckpt.CheckpointError as e:
            fail(str(e))
        if not is_url and not osp.isfile(target):
            fail(f"checkpoint {ck}: {target} not found: put the file there (mmengine's home), "
                 'or pass a local path or URL')
    elif not ck.startswith(ckpt.URL_SCHEMES) and not osp.isfile(osp.expanduser(ck)):
        fail(f'checkpoint {ck} not found: pass an existing checkpoint file or a zoo URL')
    if osp.isfile(osp.expanduser(ck)) and not looks_like_checkpoint(osp.expanduser(ck)):
        fail(f'checkpoint {ck} is not a PyTorch checkpoint (neither a complete zip archive '
             'nor a pickle; a truncated download or another file): download it again or pass '
             'the right file')


def looks_like_checkpoint(path: str) -> bool:
    """``torch.save`` writes a zip archive (torch >= 1.6; ``is_zipfile``
    also finds a truncated one's missing directory) or, before, a pickle
    (protocol 2+, first byte 0x80)."""
    import zipfile
    if zipfile.is_zipfile(path):
        return True
    with open(path, 'rb') as f:
        return f.read(1) == b'\x80'


def check_work_dir(work_dir: str) -> None:
    from mmdag.engine.preflight import probe_writable
    try:
        probe_writable(work_dir)
    except OSError as e:
        fail(f'work dir {work_dir} is not writable ({e.strerror}): pass --work-dir DIR '
             'somewhere you can write')


def setup_cpu_distributed(cfg) -> None:
    """mmengine 0.10.7 cannot launch on a CPU-only torch (init_dist calls
    torch.cuda.set_device; the default DDP wrapper passes device_ids). Start
    the gloo process group here and wrap the model without DDP."""
    import torch
    import torch.distributed as dist
    if torch.cuda.is_available() or dist.is_initialized():
        return
    dist.init_process_group(backend='gloo')
    cfg.model_wrapper_cfg = dict(type='mmdag.TestOnlyDistributedWrapper')
    cfg.env_cfg = dict(cfg.get('env_cfg', None) or {})
    cfg.env_cfg['dist_cfg'] = dict(backend='gloo')


def build_cfg(args):
    from mmengine.config import Config

    from mmdag.apis.config import add_dag_to_config
    try:
        cfg = Config.fromfile(args.config)
    except Exception as e:  # a broken or wrong config: one line, not a traceback
        fail(f'cannot read config {args.config}: {type(e).__name__}: {e}')
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    cfg.load_from = args.checkpoint
    for key in ('model', 'test_dataloader', 'test_evaluator'):
        if key not in cfg:
            fail(f'config {args.config} has no {key}: use a full mmseg/mmdet test config')
    if args.epsilons is not None and args.attack == 'none':
        fail('--epsilons sweeps an attack: name one with --attack (e.g. --attack pgd)')
    if (args.attack not in (None, 'none') or args.attack_options or args.num_figures is not None
            or args.save_perturbations or args.perturbations or args.resume
            or args.targets_options or args.hook_options or args.epsilons is not None):
        hook_options = dict(args.hook_options)
        if args.epsilons is not None:
            if args.perturbations:
                fail('--epsilons and --perturbations do not go together: transfer the saved '
                     'perturbations of one epsilon (<work_dir>/perturbations@EPS)')
            if min(args.epsilons) <= 0:
                fail(f'--epsilons {args.epsilons}: every budget must be > 0 (0..255 scale)')
            hook_options['epsilons'] = list(args.epsilons)
        if args.resume:
            hook_options['resume'] = True
        if args.num_figures is not None:
            hook_options['num_figures'] = args.num_figures
        if args.save_perturbations:
            hook_options['save_perturbations'] = True
        for d in args.perturbations or []:
            if not osp.isdir(d):
                fail(f'perturbation directory {d} not found: pass the '
                     '<work_dir>/perturbations of a run with --save-perturbations')
        if args.perturbations:
            hook_options['perturbations'] = [osp.abspath(d) for d in args.perturbations]
        if args.resize_perturbations:
            hook_options['resize_perturbations'] = True
        attack = dict(args.attack_options)
        if args.attack not in (None, 'none', 'dag'):   # DAG is the hook's default type
            from mmdag.attacks import attack_types
            attack['type'] = attack_types()[args.attack]
        add_dag_to_config(cfg, attack, hook_options, targets=dict(args.targets_options))
    elif args.attack == 'none':
        cfg.custom_hooks = [h for h in cfg.get('custom_hooks', []) or []
                            if not str(h.get('type', '')).endswith('DAGAttackHook')]
        cfg.test_evaluator = _unwrap_dag_metrics(cfg.test_evaluator)
    _add_checkpoint_check(cfg, args)
    # after the DAG pieces are in (the DAG hook's own settings are better set
    # with --attack-options / --targets-options / --hook-options, which find it by type)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if args.out is not None and not is_detection(cfg):
        ev = cfg.test_evaluator
        first = ev[0] if isinstance(ev, (list, tuple)) else ev
        first['output_dir'] = args.out
        first['keep_results'] = True
    return cfg


def _unwrap_dag_metrics(evaluator):
    """The stock metrics inside DAGMetric wrappers (one, or a list)."""
    def unwrap(m):
        return m['metric'] if str(m.get('type', '')).endswith('DAGMetric') else m
    if isinstance(evaluator, (list, tuple)):
        return [unwrap(m) for m in evaluator]
    return unwrap(evaluator)


def _add_checkpoint_check(cfg, args) -> None:
    """Every run loads its checkpoint weights-only and checks that it fits."""
    from mmdag.apis.config import add_checkpoint_check, add_mmdag_import
    add_mmdag_import(cfg)
    options = {}
    if args.trust_checkpoint:
        options['trust_checkpoint'] = True
    if args.allow_partial_checkpoint:
        options['allow_partial'] = True
    cfg.custom_hooks = add_checkpoint_check(list(cfg.get('custom_hooks', None) or []), **options)


def is_detection(cfg) -> bool:
    """An mmdet config (its default scope, else where its model type is registered)."""
    scope = cfg.get('default_scope', None)
    if scope in ('mmdet', 'mmseg'):
        return scope == 'mmdet'
    model_type = str(cfg.model.get('type', ''))
    from mmdet.registry import MODELS
    return MODELS.get(model_type) is not None and 'Segmentor' not in model_type


def main(argv=None):
    args = parse_args(argv)
    check_inputs(args)
    cfg = build_cfg(args)
    from mmdag.apis.preflight import check_dataset
    problem = check_dataset(cfg)
    if problem:
        fail(problem)
    if args.out is not None and is_detection(cfg) and not args.out.endswith(('.pkl', '.pickle')):
        fail(f'--out {args.out}: for a detection config --out is the .pkl file to dump the '
             'results to (e.g. --out results.pkl)')
    check_work_dir(cfg.work_dir)
    if args.launcher != 'none':
        setup_cpu_distributed(cfg)

    from mmengine.runner import Runner

    from mmdag.checkpoint import safe_loading, trust
    from mmdag.errors import MMDagError
    from mmdag.summary import format_table
    if args.trust_checkpoint:
        trust(args.checkpoint)
    # every checkpoint the run loads (one a model loads while it is built, too) goes
    # through mmdag's weights-only loaders; CheckpointCheckHook does it for load_from
    with safe_loading():
        try:
            runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else _build_runner(cfg)
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
        from mmdag.engine import DAGAttackHook
        dag = any(isinstance(h, DAGAttackHook) and isinstance(h.dag, DAG) for h in runner.hooks)
        print(format_table({osp.splitext(osp.basename(args.config))[0]: metrics},
                           reference=dag))
        print(f'report: {osp.join(cfg.work_dir, "dag_report.json")}')
    shutdown_distributed()
    return metrics


def shutdown_distributed() -> None:
    """Leave the process group cleanly: a gloo rank that exits with its
    group alive can abort ('terminate called without an active exception')."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def _build_runner(cfg):
    from mmengine.registry import RUNNERS
    return RUNNERS.build(cfg)


if __name__ == '__main__':
    main()
