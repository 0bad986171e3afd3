"""Turn any mmseg/mmdet test config into an attack's evaluation config."""
import copy
from typing import Optional

from mmengine.config import Config, ConfigDict

from mmdag.contract import upgrade_type_name


def _is(type_name, name: str) -> bool:
    """Whether a config's ``type`` names ``name`` (with or without the
    ``mmdag.`` scope, or by its name before 0.2: ``DAGMetric``)."""
    return (isinstance(type_name, str)
            and upgrade_type_name(type_name).rsplit('.', 1)[-1] == name)


def add_attack_to_config(cfg: Config, attack: Optional[dict] = None,
                         hook_options: Optional[dict] = None,
                         targets: Optional[dict] = None) -> Config:
    """Write an attack run's hooks into ``custom_hooks`` and wrap the test
    evaluator in ``AttackMetric``.

    The hooks, each in the config so that it shows what runs (see
    :mod:`mmdag.engine.wiring`): ``AttackHook`` (the attack),
    ``AttackFigureHook`` (the pictures, when ``num_figures`` > 0),
    ``AttackReportHook`` (report and records), ``AttackResumeHook`` (the
    state a killed run resumes from) and ``CheckpointCheckHook``.

    What is already there is kept: an existing hook (found by its type, or
    by its name before 0.2, wherever it sits among the config's custom
    hooks) gets ``attack`` and ``targets`` merged into its settings, an
    evaluator that is already an ``AttackMetric`` stays. ``num_figures``,
    ``report``, ``records`` and ``resume``, in ``hook_options`` or on the
    attack hook, go to the hook they belong to.

    Args:
        cfg (Config): a config with ``model``, ``test_dataloader``,
            ``test_evaluator``.
        attack (dict, optional): the attack's arguments to set (e.g.
            ``dict(max_iters=50)``), merged into the hook's; with a ``type``
            other than the hook's attack (``'PGD'`` on a config of DAG's),
            they replace the hook's attack settings, which are that other
            attack's.
        hook_options (dict, optional): other ``AttackHook`` arguments
            (``variants``, ``epsilons``...) and the other hooks' (``num_figures``,
            ``report``, ``records``, ``resume``).
        targets (dict, optional): target adapter arguments to set (e.g.
            ``dict(score_thr=0.1)``), merged into the hook's ``targets``.
    """
    add_mmdag_import(cfg)

    hooks = list(cfg.get('custom_hooks', None) or [])
    hook = next((h for h in hooks if _is(h.get('type'), 'AttackHook')), None)
    if hook is None:
        hook = ConfigDict(type='mmdag.AttackHook')
        hooks.append(hook)
    for key, extra in (('attack', attack), ('targets', targets)):
        if extra:
            merged = dict(hook.get(key, None) or {})
            if key == 'attack' and _attack_type(extra.get('type')) not in (
                    None, _attack_type(merged.get('type', 'DAG'))):
                # another attack than the config's: its settings belong to that one
                merged = {}
            merged.update(extra)
            hook[key] = merged
    for k, v in (hook_options or {}).items():
        hook[k] = v
    at = hooks.index(hook)
    for kind, keys in COMPANIONS:
        options = {k: hook.pop(k) for k in keys if k in hook}
        other = next((h for h in hooks if _is(h.get('type'), kind)), None)
        if other is None:
            if kind == 'AttackFigureHook' and not options.get('num_figures'):
                continue
            at += 1
            other = ConfigDict(type=f'mmdag.{kind}')
            hooks.insert(at, other)
        other.update(options)
    add_checkpoint_check(hooks)
    cfg.custom_hooks = hooks

    evaluator = cfg.get('test_evaluator', None)
    if evaluator is None:
        raise ValueError('the config has no test_evaluator: mmdag reports the wrapped metric '
                         'on orig/advr/perm and needs one (e.g. IoUMetric or VOCMetric)')
    if isinstance(evaluator, (list, tuple)):
        cfg.test_evaluator = [_wrap(m, with_stats=(k == 0)) for k, m in enumerate(evaluator)]
    else:
        cfg.test_evaluator = _wrap(evaluator, with_stats=True)
    return cfg


#: The hooks of an attack run besides ``AttackHook``, and the arguments of
#: each that ``AttackHook`` also takes (for configs that list only it).
COMPANIONS = (('AttackFigureHook', ('num_figures',)), ('AttackReportHook', ('report', 'records')),
              ('AttackResumeHook', ('resume',)))


def _attack_type(name) -> Optional[str]:
    """An attack type's registered name (a class by its name), or None."""
    if name is None:
        return None
    return getattr(name, '__name__', str(name)).rsplit('.', 1)[-1]


def add_mmdag_import(cfg: Config) -> Config:
    """Add ``'mmdag'`` to the config's ``custom_imports``."""
    imports = cfg.get('custom_imports', None) or ConfigDict(imports=[])
    names = imports.get('imports', [])
    names = [names] if isinstance(names, str) else list(names)
    if 'mmdag' not in names:
        names.append('mmdag')
    imports['imports'] = names
    imports.setdefault('allow_failed_imports', False)
    cfg.custom_imports = imports
    return cfg


def add_checkpoint_check(hooks: list, **options) -> list:
    """Append ``mmdag.CheckpointCheckHook`` to ``hooks`` unless it is there;
    set ``options`` on it."""
    hook = next((h for h in hooks if _is(h.get('type'), 'CheckpointCheckHook')), None)
    if hook is None:
        hook = ConfigDict(type='mmdag.CheckpointCheckHook')
        hooks.append(hook)
    for k, v in options.items():
        hook[k] = v
    return hooks


def _wrap(metric: dict, with_stats: bool) -> dict:
    if _is(metric.get('type'), 'AttackMetric'):
        return metric
    inner = copy.deepcopy(dict(metric))
    outer = ConfigDict(type='mmdag.AttackMetric', metric=inner, with_stats=with_stats)
    # keys mmseg's tools/test.py --out sets; they belong to the advr metric
    for k in ('output_dir', 'keep_results', 'format_only'):
        if k in inner:
            outer[k] = inner.pop(k)
    return outer


def add_dag_to_config(*args, **kwargs) -> Config:
    """:func:`add_attack_to_config`'s name before 0.2 (deprecated)."""
    import warnings
    warnings.warn('add_dag_to_config is now add_attack_to_config', DeprecationWarning,
                  stacklevel=2)
    return add_attack_to_config(*args, **kwargs)
