from .dag_attack_hook import DAGAttackHook
from .wrapper import TestOnlyDistributedWrapper

__all__ = ['DAGAttackHook', 'TestOnlyDistributedWrapper']
