"""Attack algorithms over dense targets, in plain PyTorch.

Their only import outside PyTorch is mmdag's ``ATTACKS`` registry (an
mmengine ``Registry``), into which each attack registers itself by decorator:
a new attack is one file. Nothing here imports mmdet, mmseg or mmcv."""
from .apgd import APGD
from .base import NOT_ATTACKED, STATUS, AttackResult, IterativeAttack
from .budgeted import PGD, CosPGD, SegPGD, SignGradientAttack
from .builder import attack_names, attack_types, build_attack
from .dag import DAG, DAGResult
from .det_pgd import DetPGD
from .labels import STRATEGIES, derangement
from .matched import MatchedMislabel, MatchedUntargeted, MatchedVanishing
from .replay import Replay
from .stats import permute_perturbation, perturbation_stats
from .sweep import EpsilonSweep, budget_of, build_sweep
from .targets import TargetSet
from .tog import TOGFabrication, TOGMislabel, TOGUntargeted, TOGVanishing
from .worst_case import WorstCase

__all__ = ['AttackResult', 'IterativeAttack', 'STATUS', 'NOT_ATTACKED', 'DAG', 'DAGResult',
           'Replay', 'TargetSet', 'STRATEGIES', 'derangement', 'permute_perturbation',
           'perturbation_stats', 'PGD', 'SegPGD', 'CosPGD', 'SignGradientAttack', 'APGD',
           'WorstCase', 'EpsilonSweep', 'budget_of', 'TOGVanishing', 'TOGFabrication',
           'TOGMislabel', 'TOGUntargeted', 'DetPGD', 'MatchedVanishing',
           'MatchedMislabel', 'MatchedUntargeted', 'build_attack', 'build_sweep',
           'attack_names', 'attack_types']
