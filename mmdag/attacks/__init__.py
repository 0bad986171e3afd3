"""Attack algorithms over dense targets (plain PyTorch, no OpenMMLab import)."""
from .apgd import APGD
from .base import NOT_ATTACKED, STATUS, AttackResult, IterativeAttack
from .budgeted import PGD, CosPGD, SegPGD, SignGradientAttack
from .dag import DAG, DAGResult
from .labels import STRATEGIES, derangement
from .replay import Replay
from .sweep import EpsilonSweep, budget_of
from .stats import permute_perturbation, perturbation_stats
from .targets import TargetSet
from .det_pgd import DetPGD
from .matched import MatchedMislabel, MatchedUntargeted, MatchedVanishing
from .tog import TOGFabrication, TOGMislabel, TOGUntargeted, TOGVanishing
from .worst_case import WorstCase

__all__ = ['AttackResult', 'IterativeAttack', 'STATUS', 'NOT_ATTACKED', 'DAG', 'DAGResult',
           'Replay', 'TargetSet', 'STRATEGIES', 'derangement', 'permute_perturbation',
           'perturbation_stats', 'PGD', 'SegPGD', 'CosPGD', 'SignGradientAttack', 'APGD',
           'WorstCase', 'EpsilonSweep', 'budget_of', 'TOGVanishing', 'TOGFabrication',
           'TOGMislabel', 'TOGUntargeted', 'DetPGD', 'MatchedVanishing',
           'MatchedMislabel', 'MatchedUntargeted']
