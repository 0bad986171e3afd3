"""Turn any mmseg/mmdet test config into a DAG evaluation config."""
import copy
from typing import Optional

from mmengine.config import Config, ConfigDict


def _is(type_name, name: str) -> bool:
    return isinstance(type_name, str) and type_name.rsplit('.', 1)[-1] == name


def add_dag_to_config(cfg: Config, attack: Optional[dict] = None,
                      hook_options: Optional[dict] = None,
                      targets: Optional[dict] = None) -> Config:
    """Add ``mmdag.DAGAttackHook`` and wrap the test evaluator in ``DAGMetric``.

    What is already there is kept: an existing hook (found by its type,
    wherever it sits among the config's custom hooks) gets ``attack`` and
    ``targets`` merged into its settings, an evaluator that is already a
    ``DAGMetric`` stays.

    Args:
        cfg (Config): a config with ``model``, ``test_dataloader``,
            ``test_evaluator``.
        attack (dict, optional): the attack's arguments to set (e.g.
            ``dict(max_iters=50)``), merged into the hook's; with a ``type``
            other than the hook's attack (``'PGD'`` on a config of DAG's),
            they replace the hook's attack settings, which are that other
            attack's.
        hook_options (dict, optional): other ``DAGAttackHook`` arguments
            (``num_figures``, ``variants``...).
        targets (dict, optional): target adapter arguments to set (e.g.
            ``dict(score_thr=0.1)``), merged into the hook's ``targets``.
    """
    add_mmdag_import(cfg)

    hooks = list(cfg.get('custom_hooks', None) or [])
    hook = next((h for h in hooks if _is(h.get('type'), 'DAGAttackHook')), None)
    if hook is None:
        hook = ConfigDict(type='mmdag.DAGAttackHook')
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
    add_checkpoint_check(hooks)
    cfg.custom_hooks = hooks

    evaluator = cfg.get('test_evaluator', None)
    if evaluator is None:
        raise ValueError('the config has no test_evaluator: DAG reports the wrapped metric '
                         'on orig/advr/perm and needs one (e.g. IoUMetric or VOCMetric)')
    if isinstance(evaluator, (list, tuple)):
        cfg.test_evaluator = [_wrap(m, with_stats=(k == 0)) for k, m in enumerate(evaluator)]
    else:
        cfg.test_evaluator = _wrap(evaluator, with_stats=True)
    return cfg


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
    if _is(metric.get('type'), 'DAGMetric'):
        return metric
    inner = copy.deepcopy(dict(metric))
    outer = ConfigDict(type='mmdag.DAGMetric', metric=inner, with_stats=with_stats)
    # keys mmseg's tools/test.py --out sets; they belong to the advr metric
    for k in ('output_dir', 'keep_results', 'format_only'):
        if k in inner:
            outer[k] = inner.pop(k)
    return outer
