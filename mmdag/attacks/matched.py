"""Sign-gradient attacks on a detector's matched targets: mmdag's own
variants, which use the ground truth to choose what they attack.

Plain PyTorch (and mmdag's registry); no mmdet or mmseg import.
The projected sign step of
:class:`~mmdag.attacks.budgeted.SignGradientAttack` (uniform random start,
``epsilon`` and ``alpha`` on the 0..255 scale) with TOG's budget and
schedule (``epsilon=8``, ``alpha=2``, ``max_iters=10``), on a class
cross-entropy taken over the **target set only**: the proposals, priors or
queries that the adapter matched to a ground-truth object on the clean image
(:mod:`mmdag.targets`; on a two-stage detector the proposals stay fixed and
the RPN is not attacked). These are not TOG's attacks, whose losses cover
every candidate without ground truth (:mod:`mmdag.attacks.tog`); they were
mmdag's ``TOGVanishing``, ``TOGMislabel`` and ``TOGUntargeted`` until
December 2026.

- :class:`MatchedVanishing`: every target's scores towards the background.
  A softmax head with a background logit (two-stage detectors, SSD, a DETR's
  no-object class: :attr:`TargetSet.background`): the cross-entropy against
  the background class, descended; a sigmoid head (RetinaNet, FCOS...): the
  binary cross-entropy of every class score against 0, descended;
- :class:`MatchedMislabel`: the targets correct on the clean image towards
  adversarial classes (DAG's label strategies, ``adv_labels='random'``,
  ``'least_likely'``, ``'target'``...), drawn per image from the seed, their
  cross-entropy descended;
- :class:`MatchedUntargeted`: the cross-entropy of the targets correct on
  the clean image against their own class, ascended.

The statistics count the targets correct on the clean image, as DAG's do: a
target flips when it is no longer detected as its object's class.
"""
from typing import Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from mmdag.errors import MMDagError
from mmdag.registry import ATTACKS
from .budgeted import SignGradientAttack, activation_of, target_ce
from .labels import STRATEGIES, draw_adv_labels

__all__ = ['MatchedVanishing', 'MatchedMislabel', 'MatchedUntargeted', 'vanishing_loss']


def vanishing_loss(logits: Tensor, targets) -> Tensor:
    """Per-target loss ``[N]`` that is 0 when a target's scores are all
    background.

    Args:
        logits (Tensor): ``[N, C]`` logits of the targets.
        targets: their :class:`~mmdag.attacks.TargetSet` (its activation and
            background class).

    Returns:
        Tensor: the cross-entropy against the background class (softmax
        heads) or the binary cross-entropy of every class against 0 (sigmoid
        heads), per target.
    """
    if activation_of(targets) == 'sigmoid':
        return F.binary_cross_entropy_with_logits(logits, logits.new_zeros(logits.shape),
                                                  reduction='none').sum(1)
    bg = getattr(targets, 'background', None)
    if bg is None:
        raise MMDagError(
            f'TOG vanishing needs a detector: {type(targets).__name__} has neither a background '
            'class nor sigmoid scores to push down (for segmentation use pgd, segpgd, cospgd '
            'or apgd)')
    return F.cross_entropy(logits, logits.new_full(logits.shape[:1], bg, dtype=int),
                           reduction='none')


class _Matched(SignGradientAttack):
    """TOG's step, start and defaults: ``epsilon=8``, ``alpha=2`` (2/255),
    ``max_iters=10``, random start."""

    def __init__(self, epsilon: float = 8.0, alpha: float = 2.0, max_iters: int = 10,
                 random_start: bool = True, quantize: bool = False,
                 clip_range: Tuple[float, float] = (0.0, 255.0), seed: int = 0) -> None:
        super().__init__(epsilon=epsilon, alpha=alpha, max_iters=max_iters,
                         random_start=random_start, quantize=quantize, clip_range=clip_range,
                         seed=seed)


@ATTACKS.register_module()
class MatchedVanishing(_Matched):
    """Every matched target towards background (module docstring).

    Args:
        epsilon (float): L-inf budget on the 0..255 scale. Defaults to 8.
        alpha (float): step on the 0..255 scale. Defaults to 2 (TOG's 2/255).
        max_iters (int): steps. Defaults to 10 (TOG's).
        random_start, quantize, clip_range, seed: as
            :class:`~mmdag.attacks.budgeted.SignGradientAttack`.
    """

    def init_image(self, seed, labels, targets, clean_logits, correct):
        if activation_of(targets) != 'sigmoid' and getattr(targets, 'background', None) is None:
            vanishing_loss(clean_logits[:0], targets)   # refuses in one line
        return correct, targets

    def loss(self, m: int, logits: Tensor, labels: Tensor, state, active: Tensor,
             attacked: Tensor) -> Tensor:
        """Minus the mean vanishing loss of the image's targets (the step
        ascends it: the scores descend towards background)."""
        return -vanishing_loss(logits, state).sum() / max(labels.numel(), 1)


@ATTACKS.register_module()
class MatchedUntargeted(_Matched):
    """The matched targets correct on the clean image: their cross-entropy
    against their class, ascended (module docstring). Arguments:
    :class:`MatchedVanishing`'s."""

    def loss(self, m: int, logits: Tensor, labels: Tensor, state, active: Tensor,
             attacked: Tensor) -> Tensor:
        """The mean cross-entropy of the targets correct on the clean image."""
        ce = target_ce(logits, labels, activation_of(state))
        return (ce * attacked).sum() / max(int(attacked.sum()), 1)


@ATTACKS.register_module()
class MatchedMislabel(_Matched):
    """The matched targets correct on the clean image towards adversarial
    classes (DAG's label strategies), their cross-entropy descended (module
    docstring).

    Args:
        adv_labels (str): the label strategy, one of
            :data:`mmdag.attacks.labels.STRATEGIES`. Defaults to 'random'.
        target_class (int): the class of ``adv_labels='target'``.
        exclude_classes (Sequence[int]): never adversarial labels.
        epsilon, alpha, max_iters, random_start, quantize, clip_range, seed:
            as :class:`MatchedVanishing`.
    """

    def __init__(self, epsilon: float = 8.0, alpha: float = 2.0, max_iters: int = 10,
                 adv_labels: str = 'random', target_class: int = 0,
                 exclude_classes: Sequence[int] = (), random_start: bool = True,
                 quantize: bool = False, clip_range: Tuple[float, float] = (0.0, 255.0),
                 seed: int = 0) -> None:
        if adv_labels not in STRATEGIES:
            raise ValueError(f"unknown adv_labels {adv_labels!r}; "
                             f"choose one of {sorted(STRATEGIES)}")
        super().__init__(epsilon=epsilon, alpha=alpha, max_iters=max_iters,
                         random_start=random_start, quantize=quantize, clip_range=clip_range,
                         seed=seed)
        self.adv_labels = adv_labels
        self.target_class = int(target_class)
        self.exclude_classes = tuple(int(c) for c in exclude_classes)

    def init_image(self, seed, labels, targets, clean_logits, correct):
        """The adversarial labels, drawn on the clean logits; a target wrong
        on the clean image (or without an admissible label) is not attacked."""
        adv = draw_adv_labels(self, seed, labels, targets, clean_logits).to(labels.device)
        adv = torch.where(correct, adv, torch.full_like(adv, -1))
        return adv >= 0, (targets, adv)

    def loss(self, m: int, logits: Tensor, labels: Tensor, state, active: Tensor,
             attacked: Tensor) -> Tensor:
        """Minus the mean cross-entropy towards the adversarial labels."""
        targets, adv = state
        ce = target_ce(logits, adv.clamp_min(0), activation_of(targets))
        return -(ce * attacked).sum() / max(int(attacked.sum()), 1)

    def labels_of(self, states, attacked, labels):
        return [labels[i].new_full(labels[i].shape, -1) if s is None else s[1]
                for i, s in enumerate(states)]
