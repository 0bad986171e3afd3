"""The worst case per image over several attacks.

Plain PyTorch at import; member attacks given as config dicts are built
through mmdag's ``ATTACKS`` registry when the ensemble is made.

Every member attacks the whole batch on the same targets (built once, by
the caller) and the members that start at random share one clean forward.
Each member draws its own random start: its per-image seeds carry its
index in the ensemble (SEA, Croce et al. 2024, draws a fresh start per
loss); the first member's seeds are those of the attack alone.

Per image (never per batch), the ensemble keeps the adversarial image of
the member chosen by ``criterion``:

- ``'accuracy'``, SEA's criterion (``tools/worse_only.py`` of the authors'
  code: accuracy over all labelled pixels): the lowest fraction of ALL the
  image's targets classified as their label on the member's final image,
  measured by one forward without a graph per member. The labelled counts
  are equal across members, so the chosen images' accuracy (aAcc) is at
  or below each member's, by construction;
- ``'attacked'``: the lowest fraction of the attacked targets (those
  correct on the clean image) still correct, the members' ``correct_frac``.
  A member that repairs clean-wrong targets can win with a higher accuracy;
  detectors use it (their targets are the objects' candidates, not a
  labelled image);
- ``'auto'`` (default): ``'attacked'`` where the targets have a detector's
  loss, ``'accuracy'`` otherwise (segmentation).

Ties go to the earlier member. An image whose every member ended without a
decision (non-finite logits) keeps the first member's result.
"""
import math
from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from mmdag.registry import ATTACKS
from .base import AttackResult, IterativeAttack, derive_seeds
from .builder import attack_types, build_attack
from .targets import TargetSet

__all__ = ['WorstCase', 'starts_at_random', 'clean_forward', 'member_seeds', 'CRITERIA']

#: How an ensemble chooses an image's winner (module docstring).
CRITERIA = ('auto', 'accuracy', 'attacked')

#: The stride between the seeds of two members of an ensemble: odd and not a
#: multiple of 2**32 (torch's CPU generator keeps a seed's lower 32 bits, so
#: a stride of 2**32 would give every member the same start): the golden
#: ratio's 32-bit constant, whose multiples spread over the 32-bit seeds.
MEMBER_STRIDE = 0x9E3779B9


def _build(attack, shared: dict):
    """A member from its registered name (``'segpgd'``), config dict or object;
    the shared settings fill in what a name or dict leaves unset."""
    if isinstance(attack, str):
        types = attack_types()
        if attack.lower() not in types:
            raise ValueError(f'unknown attack {attack!r} in WorstCase attacks; one of '
                             f'{sorted(types)}')
        attack = dict(type=types[attack.lower()])
    if isinstance(attack, dict):
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


def member_seeds(seeds: Sequence[int], index: int) -> List[int]:
    """The per-image seeds of an ensemble's member ``index`` from the
    ensemble's: the member's index in them, so that no two members draw the
    same random start; member 0 gets ``seeds`` (the attack alone's)."""
    return [int(s) + index * MEMBER_STRIDE for s in seeds]


def is_detector(targets) -> bool:
    """Whether a target set is a detector's (it implements a detector loss)."""
    own = getattr(type(targets), 'detector_loss', None)
    return own is not None and own is not TargetSet.detector_loss


def accuracy(images: Sequence[Tensor], targets: TargetSet) -> List[float]:
    """Per image, the fraction of all its targets classified as their label
    (SEA's per-image accuracy): one forward without a graph; ``inf`` for
    non-finite logits (no decision), 0 for an image without targets."""
    logits = clean_forward(images, targets)
    out = []
    for z, lab in zip(logits, targets.labels):
        if lab.numel() == 0:
            out.append(0.0)
        elif not bool(torch.isfinite(z).all()):
            out.append(math.inf)
        else:
            out.append(float(targets.correct(z, lab).sum()) / lab.numel())
    return out


def _typed_settings(attack) -> dict:
    """A member's settings with its type (DAG's own settings name none)."""
    s = attack.settings()
    return dict(s, type=s.get('type', type(attack).__name__))


@ATTACKS.register_module()
class WorstCase:
    """Run several attacks and keep, per image, the one that broke most.

    The statistics of an image are its winner's, with ``winner`` (the
    member's name: its type, ``#2``, ``#3`` added to a type's later repeats),
    ``criterion`` (the one used, ``'accuracy'`` or ``'attacked'``),
    ``members`` (each member's ``correct_frac`` on the image, by name), with
    the accuracy criterion ``accuracy`` (the winner's accuracy over all
    targets) and ``members_accuracy`` (each member's), and
    ``forwards``/``backwards`` summed over the members, the shared clean
    forward counted once and the accuracy forwards counted (what the image
    cost). The result's ``members`` holds each member's own result (the
    attack hook predicts each member's images too: the ``advr[<name>]``
    metric keys). The ensemble's images (what the test loop predicts as
    ADVR, and what is saved and drawn) are the per-image winners'; the
    metric reports worst-case figures from the members' predictions
    (:class:`mmdag.evaluation.AttackMetric`).

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
            (each member adds its own ``seed`` and its index,
            :func:`member_seeds`). Defaults to 0.
        criterion (str): how an image's winner is chosen, one of
            :data:`CRITERIA` (module docstring). Defaults to 'auto'.
    """

    def __init__(self, attacks: Sequence, epsilon: Optional[float] = None,
                 max_iters: Optional[int] = None, quantize: Optional[bool] = None,
                 seed: int = 0, criterion: str = 'auto') -> None:
        if criterion not in CRITERIA:
            raise ValueError(f'WorstCase criterion must be one of {CRITERIA}, got {criterion!r}')
        self.criterion = criterion
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
        return dict(type='WorstCase', seed=self.seed, criterion=self.criterion,
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
        results = [m(images, targets, seeds=member_seeds(seeds, k), regions=regions,
                     **(dict(clean_logits=clean) if use else {}))
                   for k, (m, use) in enumerate(zip(self.attacks, shared))]
        criterion = self.criterion
        if criterion == 'auto':
            criterion = 'attacked' if is_detector(targets) else 'accuracy'
        acc = ([accuracy(res.adv_images, targets) for res in results]
               if criterion == 'accuracy' else None)
        adv, pert, labels, stats = [], [], [], []
        for i in range(num):
            if acc is None:
                score = [float(res.stats[i]['correct_frac']) for res in results]
            else:
                score = [a[i] for a in acc]
            score = [f if math.isfinite(f) else math.inf for f in score]
            k = min(range(len(results)), key=lambda j: (score[j], j))
            win = results[k]
            adv.append(win.adv_images[i])
            pert.append(win.perturbations[i])
            labels.append(None if win.adv_labels is None else win.adv_labels[i])
            s = dict(win.stats[i])
            members = {n: res.stats[i]['correct_frac'] for n, res in zip(self.names, results)}
            s.update(winner=self.names[k], criterion=criterion, members=members,
                     forwards=sum(res.stats[i].get('forwards', 0) for res in results)
                     + own_clean + (len(results) if acc is not None else 0),
                     backwards=sum(res.stats[i].get('backwards', 0) for res in results))
            if acc is not None:
                s.update(accuracy=acc[k][i],
                         members_accuracy={n: a[i] for n, a in zip(self.names, acc)})
            stats.append(s)
        # adversarial labels only where every winner has them (DAG's)
        adv_labels: Optional[List[Tensor]] = None
        if all(lab is not None for lab in labels):
            adv_labels = labels
        return AttackResult(adv_images=adv, perturbations=pert, adv_labels=adv_labels,
                            stats=stats, members=dict(zip(self.names, results)))
