"""Attack algorithms over dense targets (plain PyTorch, no OpenMMLab import)."""
from .dag import DAG, DAGResult
from .labels import STRATEGIES, derangement
from .stats import permute_perturbation, perturbation_stats
from .targets import TargetSet

__all__ = ['DAG', 'DAGResult', 'TargetSet', 'STRATEGIES', 'derangement',
           'permute_perturbation', 'perturbation_stats']
