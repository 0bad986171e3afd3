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
    from mmdag.attacks import APGD, DAG, PGD, CosPGD, SegPGD, WorstCase
    for attack in (DAG, PGD, SegPGD, CosPGD, APGD, WorstCase):
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


def attack_types() -> dict:
    """``tools/test.py --attack`` name (the registered name in lower case) ->
    the registered type."""
    return {name.lower(): name for name in ATTACKS.module_dict}


def attack_names() -> list:
    """The registered attacks' names, as ``tools/test.py --attack`` takes them."""
    return sorted(attack_types())
