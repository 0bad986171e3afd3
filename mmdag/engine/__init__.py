from mmdag.contract import OLD_TYPE_NAMES
from mmdag.registry import HOOKS, keep_old_names
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

__getattr__ = keep_old_names(HOOKS, __name__, OLD_NAMES)
