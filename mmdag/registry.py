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
    from mmdag.attacks import DAG
    ATTACKS.register_module('DAG', module=DAG)


_register_builtin_attacks()


def build_attack(cfg: dict):
    """An attack from its config dict (``type`` defaults to ``'DAG'``; the
    other keys are its arguments)."""
    cfg = dict(cfg or {})
    cfg.setdefault('type', 'DAG')
    return ATTACKS.build(cfg)


def attack_types() -> dict:
    """``tools/test.py --attack`` name (the registered name in lower case) ->
    the registered type."""
    return {name.lower(): name for name in ATTACKS.module_dict}


def attack_names() -> list:
    """The registered attacks' names, as ``tools/test.py --attack`` takes them."""
    return sorted(attack_types())
