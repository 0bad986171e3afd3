from mmdag.contract import OLD_TYPE_NAMES
from .attack_hook import AttackHook
from .checkpoint_hook import CheckpointCheckHook
from .figure_hook import AttackFigureHook
from .report_hook import AttackReportHook
from .resume_hook import AttackResumeHook
from .wrapper import TestOnlyDistributedWrapper

__all__ = ['CheckpointCheckHook', 'AttackHook', 'AttackFigureHook', 'AttackReportHook',
           'AttackResumeHook', 'TestOnlyDistributedWrapper']

#: The hooks' names before 0.2 (named after DAG): configs that say
#: ``mmdag.DAGAttackHook`` still build, and the old imports resolve (with a
#: DeprecationWarning).
OLD_NAMES = {old: globals()[new] for old, new in OLD_TYPE_NAMES.items() if new.endswith('Hook')}


def _register_old_names() -> None:
    from mmdag.registry import HOOKS
    for old, cls in OLD_NAMES.items():
        HOOKS.register_module(name=old, module=cls)


_register_old_names()


def __getattr__(name):
    if name in OLD_NAMES:
        import warnings
        new = OLD_NAMES[name].__name__
        warnings.warn(f'mmdag.engine.{name} is now mmdag.engine.{new}', DeprecationWarning,
                      stacklevel=2)
        return OLD_NAMES[name]
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
