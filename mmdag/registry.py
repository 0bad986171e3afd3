"""mmdag's registries: children of mmengine's, under the ``mmdag`` scope.

Registries only: this module imports nothing of mmdag, so every layer can
register into it without an import cycle (``tests/test_package/test_layers.py``).

Configs of any OpenMMLab library name mmdag's pieces as ``mmdag.AttackHook``
or ``mmdag.AttackMetric`` after ``custom_imports=dict(imports=['mmdag'])``.
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
#: build (:mod:`mmdag.attacks.builder`). An attack registers itself with
#: ``@ATTACKS.register_module()`` in its own file; the built-in ones are found
#: in :mod:`mmdag.attacks` when the registry is first read.
ATTACKS = Registry('attack', scope='mmdag', locations=['mmdag.attacks'])


_MOVED = ('build_attack', 'build_sweep', 'attack_types', 'attack_names')


def __getattr__(name):
    # the builders lived here until the registry became registries only;
    # they are in mmdag.attacks.builder now (read lazily: no import cycle)
    if name in _MOVED:
        import importlib
        import warnings
        warnings.warn(f'mmdag.registry.{name} moved to mmdag.attacks.{name}',
                      DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module('mmdag.attacks'), name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def keep_old_names(registry: Registry, package: str, old_names: dict):
    """Register each class of ``old_names`` (``{old name: class}``) in
    ``registry`` under its old name too, so that configs naming it still
    build, and return the ``__getattr__`` for ``package`` that resolves the
    old names with a DeprecationWarning (mmdag's names before 0.2)."""
    for old, cls in old_names.items():
        registry.register_module(name=old, module=cls)

    def __getattr__(name):
        if name in old_names:
            import warnings
            warnings.warn(f'{package}.{name} is now {package}.{old_names[name].__name__}',
                          DeprecationWarning, stacklevel=2)
            return old_names[name]
        raise AttributeError(f'module {package!r} has no attribute {name!r}')

    return __getattr__
