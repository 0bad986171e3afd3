from .checkpoint_hook import CheckpointCheckHook
from .dag_attack_hook import DAGAttackHook
from .figure_hook import DAGFigureHook
from .report_hook import DAGReportHook
from .resume_hook import DAGResumeHook
from .wrapper import TestOnlyDistributedWrapper

__all__ = ['CheckpointCheckHook', 'DAGAttackHook', 'DAGFigureHook', 'DAGReportHook',
           'DAGResumeHook', 'TestOnlyDistributedWrapper']
