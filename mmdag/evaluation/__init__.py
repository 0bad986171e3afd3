from .attack_metric import AttackMetric

__all__ = ['AttackMetric']

#: The metric wrapper's name before 0.2 (named after DAG): configs
#: that say ``mmdag.DAGMetric`` still build, and the old import resolves
#: (with a DeprecationWarning).
OLD_NAMES = {'DAGMetric': AttackMetric}


def _register_old_names() -> None:
    from mmdag.registry import METRICS
    for old, cls in OLD_NAMES.items():
        METRICS.register_module(name=old, module=cls)


_register_old_names()


def __getattr__(name):
    if name in OLD_NAMES:
        import warnings
        new = OLD_NAMES[name].__name__
        warnings.warn(f'mmdag.evaluation.{name} is now mmdag.evaluation.{new}',
                      DeprecationWarning, stacklevel=2)
        return OLD_NAMES[name]
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
