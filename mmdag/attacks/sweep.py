"""One attack at several budgets: an epsilon sweep on one batch.

Plain PyTorch; no OpenMMLab import. The attacks are built by the caller
(:func:`mmdag.registry.build_sweep`), one per epsilon, with equal settings
otherwise. Each runs from the clean image on the same targets with the same
per-image seeds, so its result at an epsilon is the one a run at that
epsilon alone gives; the attacks that start at random share one clean
forward (counted in the first one's ``forwards``).
"""
from typing import Dict, List, Optional, Sequence, Tuple

from torch import Tensor

from .result import AttackResult
from .targets import TargetSet
from .worst_case import clean_forward, starts_at_random

__all__ = ['EpsilonSweep', 'budget_of']


def budget_of(attack) -> Optional[float]:
    """The L-inf budget of an attack: its ``epsilon`` (an ensemble's is the
    one all its members share; None when they differ or one has none)."""
    return getattr(attack, 'epsilon', None)


class EpsilonSweep:
    """Run one attack at several budgets on a batch.

    The result is the attack's at the largest epsilon (what the test loop
    predicts as ADVR), with ``sweep``: every epsilon's result, smallest first.

    Args:
        attacks (Sequence[tuple]): ``(epsilon, attack)`` pairs, each attack
            built with that budget (see :func:`budget_of`); the same seed and
            clip range.
    """

    def __init__(self, attacks: Sequence[Tuple[float, object]]) -> None:
        pairs = sorted(((float(e), a) for e, a in attacks), key=lambda p: p[0])
        if not pairs:
            raise ValueError('an epsilon sweep needs at least one epsilon')
        if len({e for e, _ in pairs}) != len(pairs):
            raise ValueError(f'repeated epsilons in {[e for e, _ in pairs]}')
        for e, a in pairs:
            if budget_of(a) is None or abs(budget_of(a) - e) > 1e-9:
                raise ValueError(f'the attack for epsilon {e:g} has budget {budget_of(a)}')
        if len({(a.seed, tuple(a.clip_range)) for _, a in pairs}) > 1:
            raise ValueError('the attacks of a sweep must share seed and clip_range')
        self.epsilons: List[float] = [e for e, _ in pairs]
        self.attacks = [a for _, a in pairs]
        self.primary = self.attacks[-1]
        self.seed = self.primary.seed
        self.clip_range = self.primary.clip_range
        self.epsilon = self.epsilons[-1]

    def settings(self) -> dict:
        return dict(self.primary.settings(), epsilons=list(self.epsilons))

    def __call__(self, images: Sequence[Tensor], targets: TargetSet,
                 seeds: Optional[Sequence[int]] = None,
                 regions: Optional[Sequence[Optional[Tuple[int, int]]]] = None) -> AttackResult:
        clean = None
        if any(starts_at_random(a) for a in self.attacks):
            clean = clean_forward(images, targets)
        sweep: Dict[float, AttackResult] = {}
        for k, (e, a) in enumerate(zip(self.epsilons, self.attacks)):
            extra = dict(clean_logits=clean) if clean is not None and starts_at_random(a) else {}
            res = a(images, targets, seeds=seeds, regions=regions, **extra)
            if k == 0 and clean is not None:
                for s in res.stats:
                    s['forwards'] = s.get('forwards', 0) + 1
            sweep[e] = res
        top = sweep[self.epsilons[-1]]
        return AttackResult(adv_images=top.adv_images, perturbations=top.perturbations,
                            adv_labels=top.adv_labels, stats=top.stats, sweep=sweep,
                            members=top.members)
