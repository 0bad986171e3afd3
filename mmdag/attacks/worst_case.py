"""The worst case per image over several attacks.

Plain PyTorch at import; member attacks given as config dicts are built
through mmdag's ``ATTACKS`` registry when the ensemble is made.

Every member attacks the whole batch on the same targets (built once, by
the caller) and the members that start at random share one clean forward;
per image, the ensemble keeps the adversarial image with the
smallest fraction of attacked targets still correct (SEA's criterion for
accuracy, Croce et al. 2024: the worst case is chosen per image, never per
batch). Ties go to the earlier member. An image whose every member ended
without a decision (non-finite logits) keeps the first member's result.
"""
import math
from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from .base import AttackResult, IterativeAttack, derive_seeds
from .targets import TargetSet

__all__ = ['WorstCase', 'starts_at_random', 'clean_forward']


def _build(attack, shared: dict):
    """A member from its registered name (``'segpgd'``), config dict or object;
    the shared settings fill in what a name or dict leaves unset."""
    if isinstance(attack, str):
        from mmdag.registry import attack_types
        types = attack_types()
        if attack.lower() not in types:
            raise ValueError(f'unknown attack {attack!r} in WorstCase attacks; one of '
                             f'{sorted(types)}')
        attack = dict(type=types[attack.lower()])
    if isinstance(attack, dict):
        from mmdag.registry import build_attack
        return build_attack({**shared, **attack})
    return attack


def starts_at_random(attack) -> bool:
    """Whether an attack makes a clean forward before its random start (an
    ensemble: whether a member does): a forward a caller running several
    attacks on one batch can make once and pass as ``clean_logits``."""
    members = getattr(attack, 'attacks', None)
    if members is not None:
        return any(starts_at_random(m) for m in members)
    return isinstance(attack, IterativeAttack) and bool(getattr(attack, 'random_start', False))


def clean_forward(images: Sequence[Tensor], targets: TargetSet) -> List[Tensor]:
    """The targets' logits on the clean images, without a graph: the
    ``clean_logits`` that attacks on one batch share."""
    with torch.no_grad():
        return [z.detach() for z in targets.logits(list(images), list(range(len(images))))]


def _typed_settings(attack) -> dict:
    """A member's settings with its type (DAG's own settings name none)."""
    s = attack.settings()
    return dict(s, type=s.get('type', type(attack).__name__))


class WorstCase:
    """Run several attacks and keep, per image, the one that broke most.

    The statistics of an image are its winner's, with ``winner`` (the
    member's name: its type, ``#2``, ``#3`` added to a type's later repeats),
    ``members`` (each member's ``correct_frac`` on the image, by name), and
    ``forwards``/``backwards`` summed over the members, the shared clean
    forward counted once (what the image cost). The result's ``members``
    holds each member's own result (the attack hook predicts each member's
    images too: the ``advr[<name>]`` metric keys).

    Args:
        attacks (Sequence[str | dict | attack]): the members, as registered
            names (``'pgd'``, as ``--attack`` takes them), config dicts
            (``dict(type='PGD', alpha=1)``) or built attacks. They must share
            ``clip_range``.
        epsilon (float, optional): the budget (0..255 scale) of every member
            given by name or dict that does not set its own. Defaults to
            None (each member's default).
        max_iters (int, optional): the same for ``max_iters``.
        quantize (bool, optional): the same for ``quantize``.
        seed (int): base seed the members' per-image seeds are derived from
            (each member adds its own ``seed``). Defaults to 0.
    """

    def __init__(self, attacks: Sequence, epsilon: Optional[float] = None,
                 max_iters: Optional[int] = None, quantize: Optional[bool] = None,
                 seed: int = 0) -> None:
        if isinstance(attacks, (str, dict)):
            attacks = [attacks]
        shared = {k: v for k, v in dict(epsilon=epsilon, max_iters=max_iters,
                                        quantize=quantize).items() if v is not None}
        members = [_build(a, shared) for a in attacks]
        if not members:
            raise ValueError('WorstCase needs at least one attack in attacks=[...]')
        if any(isinstance(m, WorstCase) for m in members):
            raise ValueError('WorstCase members cannot be WorstCase ensembles')
        ranges = {tuple(m.clip_range) for m in members}
        if len(ranges) > 1:
            raise ValueError(f'the attacks of a WorstCase must share clip_range, got {ranges}')
        self.attacks = members
        self.seed = int(seed)
        self.clip_range = members[0].clip_range
        types = [_typed_settings(m)['type'] for m in members]
        # a repeated type: the first keeps its name, the next are '#2', '#3', ...
        self.names = [t if types[:k + 1].count(t) == 1 else f'{t}#{types[:k + 1].count(t)}'
                      for k, t in enumerate(types)]

    @property
    def epsilon(self) -> Optional[float]:
        """The budget every member shares (None when they differ or one has none)."""
        eps = {getattr(m, 'epsilon', None) for m in self.attacks}
        return eps.pop() if len(eps) == 1 else None

    def settings(self) -> dict:
        return dict(type='WorstCase', seed=self.seed,
                    attacks=[_typed_settings(m) for m in self.attacks])

    def __call__(self, images: Sequence[Tensor], targets: TargetSet,
                 seeds: Optional[Sequence[int]] = None,
                 regions: Optional[Sequence[Optional[Tuple[int, int]]]] = None,
                 clean_logits: Optional[Sequence[Tensor]] = None) -> AttackResult:
        """Attack a batch (the arguments of :meth:`IterativeAttack.__call__`;
        ``clean_logits`` given by the caller are shared by the members that
        start at random and not counted here)."""
        num = len(images)
        seeds = derive_seeds(self.seed, seeds, num)
        # one clean forward for every member that starts at random (their
        # attacked targets are chosen on the clean image); counted once
        shared = [starts_at_random(m) for m in self.attacks]
        clean = None if clean_logits is None else list(clean_logits)
        own_clean = clean is None and any(shared)
        if own_clean:
            clean = clean_forward(images, targets)
        results = [m(images, targets, seeds=seeds, regions=regions,
                     **(dict(clean_logits=clean) if use else {}))
                   for m, use in zip(self.attacks, shared)]
        adv, pert, labels, stats = [], [], [], []
        for i in range(num):
            fracs = [res.stats[i]['correct_frac'] for res in results]
            score = [f if math.isfinite(f) else math.inf for f in map(float, fracs)]
            k = min(range(len(results)), key=lambda j: (score[j], j))
            win = results[k]
            adv.append(win.adv_images[i])
            pert.append(win.perturbations[i])
            labels.append(None if win.adv_labels is None else win.adv_labels[i])
            s = dict(win.stats[i])
            members = {n: res.stats[i]['correct_frac'] for n, res in zip(self.names, results)}
            s.update(winner=self.names[k], members=members,
                     forwards=sum(res.stats[i].get('forwards', 0) for res in results)
                     + own_clean,
                     backwards=sum(res.stats[i].get('backwards', 0) for res in results))
            stats.append(s)
        # adversarial labels only where every winner has them (DAG's)
        adv_labels: Optional[List[Tensor]] = None
        if all(lab is not None for lab in labels):
            adv_labels = labels
        return AttackResult(adv_images=adv, perturbations=pert, adv_labels=adv_labels,
                            stats=stats, members=dict(zip(self.names, results)))
