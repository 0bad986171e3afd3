"""TOG's attacks on a detector's targets (Chow et al., "Adversarial
Objectness Gradient Attacks in Real-time Object Detection Systems", TPS
2020; the authors' ``tog/attacks.py``, ``tog_vanishing``).

Plain PyTorch; no OpenMMLab import. The projected sign step of
:class:`~mmdag.attacks.budgeted.SignGradientAttack` (uniform random start,
``epsilon`` and ``alpha`` on the 0..255 scale) on a loss that makes every
detection vanish: each target's scores are pushed towards the background.

- a softmax head with a background logit (two-stage detectors, SSD, a
  DETR's no-object class: :attr:`TargetSet.background`): the cross-entropy
  of every target against the background class, descended;
- a sigmoid head (RetinaNet, FCOS, ... no background logit): the binary
  cross-entropy of every class score against 0, descended.

The loss is taken on every target with a true label (for a detector: the
proposals, priors or queries matched to a ground-truth object), as TOG's
loss covers every detection; the statistics count the targets correct on
the clean image, as DAG's do: a target flips when it is no longer detected
as its object's class. The authors' defaults, on the 0..1 scale: epsilon
8/255, step 2/255, 10 iterations; here ``epsilon=8``, ``alpha=2``,
``max_iters=10``.

Also here, with the same step, start and defaults:

- :class:`TOGMislabel` (``tog_mislabel``): every detection towards an
  adversarial class, the cross-entropy towards it descended. The labels are
  DAG's (``adv_labels='random'``, ``'least_likely'`` (TOG's ``ll``),
  ``'target'``...), drawn per image from the seed;
- :class:`TOGUntargeted` (``tog_untargeted``): the cross-entropy of the
  detections of the clean image against their own class, ascended. Here the
  clean detections are the targets correct on the clean image (a matched
  proposal, prior or query detected as its object's class).

TOG's fabrication (every candidate box towards an object) needs targets on
the background, which the target sets do not build: it is not provided.
"""
from typing import Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .budgeted import SignGradientAttack, activation_of, target_ce
from .labels import STRATEGIES, draw_adv_labels
from mmdag.errors import MMDagError

__all__ = ['TOGVanishing', 'TOGMislabel', 'TOGUntargeted', 'vanishing_loss']


def vanishing_loss(logits: Tensor, targets) -> Tensor:
    """Per-target loss ``[N]`` that is 0 when a target's scores are all
    background: the cross-entropy against the background class (softmax
    heads) or the binary cross-entropy of every class against 0 (sigmoid
    heads)."""
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


class _TOG(SignGradientAttack):
    """TOG's step, start and defaults (module docstring): ``epsilon=8``,
    ``alpha=2`` (2/255), ``max_iters=10``, random start."""

    def __init__(self, epsilon: float = 8.0, alpha: float = 2.0, max_iters: int = 10,
                 random_start: bool = True, quantize: bool = False,
                 clip_range: Tuple[float, float] = (0.0, 255.0), seed: int = 0) -> None:
        super().__init__(epsilon=epsilon, alpha=alpha, max_iters=max_iters,
                         random_start=random_start, quantize=quantize, clip_range=clip_range,
                         seed=seed)


class TOGVanishing(_TOG):
    """TOG vanishing (module docstring): every detection towards background.

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


class TOGUntargeted(_TOG):
    """TOG untargeted (module docstring): the clean detections' cross-entropy
    against their class, ascended (the image's state is its target set, as
    :class:`~mmdag.attacks.budgeted.SignGradientAttack` keeps it).
    Arguments: :class:`TOGVanishing`'s."""

    def loss(self, m: int, logits: Tensor, labels: Tensor, state, active: Tensor,
             attacked: Tensor) -> Tensor:
        """The mean cross-entropy of the targets detected on the clean image."""
        ce = target_ce(logits, labels, activation_of(state))
        return (ce * attacked).sum() / max(int(attacked.sum()), 1)


class TOGMislabel(_TOG):
    """TOG mislabel (module docstring): the clean detections towards
    adversarial classes (DAG's label strategies), their cross-entropy
    descended.

    Args:
        adv_labels (str): the label strategy, one of
            :data:`mmdag.attacks.labels.STRATEGIES`. Defaults to 'random'.
        target_class (int): the class of ``adv_labels='target'``.
        exclude_classes (Sequence[int]): never adversarial labels.
        epsilon, alpha, max_iters, random_start, quantize, clip_range, seed:
            as :class:`TOGVanishing`.
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
