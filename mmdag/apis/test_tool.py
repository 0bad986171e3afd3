"""What ``tools/test.py`` does between its command line and the runner:
check the inputs, build the config (the attack hook and metric wrapper
added, the checkpoint check, the overrides), and the CPU-distributed set-up.
Every user mistake raises :class:`~mmdag.errors.MMDagError` with one line
naming the fix; the tool prints it (:func:`mmdag.errors.fail`)."""
import os.path as osp
from typing import NoReturn

from mmdag.contract import upgrade_type_name
from mmdag.errors import MMDagError


def stop(msg: str) -> NoReturn:
    """A user's mistake, in one line naming the fix."""
    raise MMDagError(msg)


def check_inputs(args) -> None:
    """Catch the usual mistakes before anything is built or written."""
    from mmdag.paths import resolve_config
    args.config = resolve_config(args.config)   # mmdag::..., or configs/... from anywhere
    if not osp.isfile(args.config):
        stop(f'config {args.config} not found: pass the path of a config file '
             '(e.g. configs/dag/fcn_r50-d8_4xb4-20k_voc12aug-512x512_dag.py)')
    from mmdag import checkpoint as ckpt
    ck = args.checkpoint
    if '://' in ck and not ck.startswith(ckpt.URL_SCHEMES) and not osp.isfile(ck):
        stop(ckpt.unsupported_scheme_message(ck))
    if ck.startswith(ckpt.ZOO_SCHEMES):   # a name the tables lack, a file not under mmengine's home
        try:
            target, is_url = ckpt.resolve_zoo_name(ck, warn=False)
        except ckpt.CheckpointError as e:
            stop(str(e))
        if not is_url and not osp.isfile(target):
            stop(f"checkpoint {ck}: {target} not found: put the file there (mmengine's home), "
                 'or pass a local path or URL')
    elif not ck.startswith(ckpt.URL_SCHEMES) and not osp.isfile(osp.expanduser(ck)):
        stop(f'checkpoint {ck} not found: pass an existing checkpoint file or a zoo URL')
    if osp.isfile(osp.expanduser(ck)) and not looks_like_checkpoint(osp.expanduser(ck)):
        stop(f'checkpoint {ck} is not a PyTorch checkpoint (neither a complete zip archive '
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
    from mmdag.engine.early_checks import probe_writable
    try:
        probe_writable(work_dir)
    except OSError as e:
        stop(f'work dir {work_dir} is not writable ({e.strerror}): pass --work-dir DIR '
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

    from mmdag.apis.config import add_attack_to_config
    try:
        cfg = Config.fromfile(args.config)
    except Exception as e:  # a broken or wrong config: one line, not a traceback
        stop(f'cannot read config {args.config}: {type(e).__name__}: {e}')
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    cfg.load_from = args.checkpoint
    for key in ('model', 'test_dataloader', 'test_evaluator'):
        if key not in cfg:
            stop(f'config {args.config} has no {key}: use a full mmseg/mmdet test config')
    if args.epsilons is not None and args.attack == 'none':
        stop('--epsilons sweeps an attack: name one with --attack (e.g. --attack pgd)')
    if (args.attack not in (None, 'none') or args.attack_options or args.num_figures is not None
            or args.save_perturbations or args.perturbations or args.resume
            or args.targets_options or args.hook_options or args.epsilons is not None):
        hook_options = dict(args.hook_options)
        if args.epsilons is not None:
            if args.perturbations:
                stop('--epsilons and --perturbations do not go together: transfer the saved '
                     'perturbations of one epsilon (<work_dir>/perturbations@EPS)')
            if min(args.epsilons) <= 0:
                stop(f'--epsilons {args.epsilons}: every budget must be > 0 (0..255 scale)')
            hook_options['epsilons'] = list(args.epsilons)
        if args.resume:
            hook_options['resume'] = True
        if args.num_figures is not None:
            hook_options['num_figures'] = args.num_figures
        if args.save_perturbations:
            hook_options['save_perturbations'] = True
        for d in args.perturbations or []:
            if not osp.isdir(d):
                stop(f'perturbation directory {d} not found: pass the '
                     '<work_dir>/perturbations of a run with --save-perturbations')
        if args.perturbations:
            hook_options['perturbations'] = [osp.abspath(d) for d in args.perturbations]
        if args.resize_perturbations:
            hook_options['resize_perturbations'] = True
        attack = dict(args.attack_options)
        if args.attack not in (None, 'none', 'dag'):   # DAG is the hook's default type
            from mmdag.attacks import attack_types
            attack['type'] = attack_types()[args.attack]
        add_attack_to_config(cfg, attack, hook_options, targets=dict(args.targets_options))
    elif args.attack == 'none':
        cfg.custom_hooks = [h for h in cfg.get('custom_hooks', []) or []
                            if upgrade_type_name(str(h.get('type', ''))).rsplit('.', 1)[-1]
                            != 'AttackHook']
        cfg.test_evaluator = unwrap_attack_metrics(cfg.test_evaluator)
    add_checkpoint_check_of(cfg, args)
    # after the attack's pieces are in (the attack hook's own settings are better set
    # with --attack-options / --targets-options / --hook-options, which find it by type)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if args.out is not None and not is_detection(cfg):
        ev = cfg.test_evaluator
        first = ev[0] if isinstance(ev, (list, tuple)) else ev
        first['output_dir'] = args.out
        first['keep_results'] = True
    return cfg


def unwrap_attack_metrics(evaluator):
    """The stock metrics inside AttackMetric wrappers (one, or a list)."""
    def unwrap(m):
        kind = upgrade_type_name(str(m.get('type', '')))
        return m['metric'] if kind.rsplit('.', 1)[-1] == 'AttackMetric' else m
    if isinstance(evaluator, (list, tuple)):
        return [unwrap(m) for m in evaluator]
    return unwrap(evaluator)


def add_checkpoint_check_of(cfg, args) -> None:
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


def shutdown_distributed() -> None:
    """Leave the process group cleanly: a gloo rank that exits with its
    group alive can abort ('terminate called without an active exception')."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def build_runner(cfg):
    from mmengine.registry import RUNNERS
    return RUNNERS.build(cfg)
