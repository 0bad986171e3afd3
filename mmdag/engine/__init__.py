from .checkpoint_hook import CheckpointCheckHook
from .dag_attack_hook import DAGAttackHook
from .wrapper import TestOnlyDistributedWrapper

__all__ = ['CheckpointCheckHook', 'DAGAttackHook', 'TestOnlyDistributedWrapper']
