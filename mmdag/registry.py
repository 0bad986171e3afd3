"""mmdag's registries: children of mmengine's, under the ``mmdag`` scope.

Configs of any OpenMMLab library name mmdag's pieces as ``mmdag.DAGAttackHook``
or ``mmdag.DAGMetric`` after ``custom_imports=dict(imports=['mmdag'])``.
Parents are mmengine's root registries (not mmseg's or mmdet's), so the names
resolve under either library's default scope.
"""
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODEL_WRAPPERS as MMENGINE_MODEL_WRAPPERS
from mmengine.registry import Registry

HOOKS = Registry('hook', parent=MMENGINE_HOOKS, scope='mmdag', locations=['mmdag.engine'])
METRICS = Registry('metric', parent=MMENGINE_METRICS, scope='mmdag',
                   locations=['mmdag.evaluation'])
MODEL_WRAPPERS = Registry('model_wrapper', parent=MMENGINE_MODEL_WRAPPERS, scope='mmdag',
                          locations=['mmdag.engine'])
#: Target adapters (model family -> TargetSet builder).
TARGETS = Registry('dag target', scope='mmdag', locations=['mmdag.targets'])
#: Attacks: what the hook (``attack=dict(type='DAG', ...)``; ``type`` defaults
#: to ``'DAG'``), :func:`mmdag.apis.attack_batch` and ``tools/test.py --attack``
#: build. A new attack registers itself with ``@ATTACKS.register_module()``.
ATTACKS = Registry('attack', scope='mmdag')


def _register_builtin_attacks() -> None:
    # mmdag.attacks stays plain PyTorch (no OpenMMLab import): its attacks are
    # registered here rather than by a decorator there
    from mmdag.attacks import (APGD, DAG, PGD, CosPGD, DetPGD, MatchedMislabel,
                               MatchedUntargeted, MatchedVanishing, SegPGD, TOGFabrication,
                               TOGMislabel, TOGUntargeted, TOGVanishing, WorstCase)
    for attack in (DAG, PGD, SegPGD, CosPGD, APGD, WorstCase, TOGVanishing, TOGFabrication,
                   TOGMislabel, TOGUntargeted, DetPGD, MatchedVanishing, MatchedMislabel,
                   MatchedUntargeted):
        ATTACKS.register_module(attack.__name__, module=attack)


_register_builtin_attacks()


def build_attack(cfg: dict):
    """An attack from its config dict (``type`` defaults to ``'DAG'``; the
    other keys are its arguments)."""
    cfg = dict(cfg or {})
    name = cfg.pop('type', 'DAG')
    if not isinstance(name, str):   # a class, as mmengine's build takes it
        return name(**cfg)
    # looked up here, not by ATTACKS.build: build searches the default scope's
    # registry first (mmseg, mmdet) and warns that it has no 'attack' registry
    cls = ATTACKS.get(name)
    if cls is None:
        raise KeyError(f'{name!r} is not in the mmdag::attack registry; registered: '
                       f'{sorted(ATTACKS.module_dict)}')
    return cls(**cfg)


def build_sweep(cfg: dict, epsilons):
    """An :class:`~mmdag.attacks.EpsilonSweep` of the attack of ``cfg`` at
    each of ``epsilons`` (0..255 scale): ``cfg`` with its ``epsilon`` set
    to each (a ``WorstCase``'s members share it) and, where it sets no
    ``alpha``, the step scaled to the budget
    (:func:`~mmdag.attacks.sweep.sweep_config`)."""
    from mmdag.attacks import EpsilonSweep, budget_of
    from mmdag.attacks.sweep import sweep_config
    from mmdag.errors import MMDagError
    cfg = dict(cfg or {})
    name = cfg.get('type', 'DAG')
    name = getattr(name, '__name__', name)
    try:
        epsilons = sorted({float(e) for e in epsilons})
    except (TypeError, ValueError):
        raise MMDagError(f'epsilons={epsilons!r}: give numbers on the 0..255 scale '
                         '(e.g. epsilons=[0.25, 0.5, 1, 2, 4, 8])') from None
    if not epsilons or epsilons[0] <= 0:
        raise MMDagError(f'epsilons={epsilons!r}: give one or more budgets > 0 '
                         '(0..255 scale, e.g. [0.25, 0.5, 1, 2, 4, 8])')
    pairs = []
    for e in epsilons:
        try:
            attack = build_attack(sweep_config(cfg, e))
        except TypeError as err:
            raise MMDagError(f'{name} takes no epsilon ({err}): an epsilon sweep needs an '
                             'attack with a budget (pgd, segpgd, cospgd, apgd, dag, '
                             'worstcase)') from None
        if budget_of(attack) is None or abs(budget_of(attack) - e) > 1e-9:
            raise MMDagError(f'{name} at epsilon {e:g} has budget {budget_of(attack)}: in a '
                             "sweep the members of a WorstCase must not set their own "
                             'epsilon (the sweep sets it)')
        pairs.append((e, attack))
    return EpsilonSweep(pairs)


def attack_types() -> dict:
    """``tools/test.py --attack`` name (the registered name in lower case) ->
    the registered type."""
    return {name.lower(): name for name in ATTACKS.module_dict}


def attack_names() -> list:
    """The registered attacks' names, as ``tools/test.py --attack`` takes them."""
    return sorted(attack_types())
