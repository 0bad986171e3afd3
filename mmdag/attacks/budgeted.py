"""Epsilon-bounded sign-gradient attacks: PGD, SegPGD, CosPGD.

Plain PyTorch (and mmdag's registry); no mmdet or mmseg import.
Each is an
:class:`~mmdag.attacks.base.IterativeAttack`: the loop, the per-image
bookkeeping, the budget and the statistics are the base class's; an attack
here is its per-target loss and the projected sign step

    ``X_{m+1} = clip_[0,255](clip_eps(X_m + alpha * sign(grad L(X_m)) - X_0) + X_0)``

from a random start uniform in ``[-epsilon, epsilon]`` (seeded per image, as
DAG's labels are). Epsilon and alpha are on the 0..255 scale of the images
the model's data preprocessor receives: ``epsilon=8`` is the ``8/255`` of
papers that scale images to 0..1, ``alpha=2.55`` their ``0.01``.

The loss is taken on every target with a true label (for segmentation: every
pixel the metric counts), not only those correct on the clean image, as the
reference implementations do; the statistics (``correct_frac``, the trace,
``converged``) count the targets correct on the clean image, as DAG's do.
They run all ``max_iters`` steps (a flipped pixel may come back) and return
the last iterate, as the references do.

- PGD: the cross-entropy (Madry et al. 2018; the ``cospgd`` package's loop);
- SegPGD (Gu et al., ECCV 2022; ``cospgd.Attack.segpgd_scale``): the
  cross-entropy weighted ``1 - lambda_m`` on correct and ``lambda_m`` on
  wrong targets, ``lambda_m = m / (2 max_iters)``;
- CosPGD (Agnihotri et al., ICML 2024; ``cospgd.Attack.cospgd_scale``): the
  cross-entropy times ``cos(p, one_hot(l))``, detached.

The loss fits the head's activation (:attr:`TargetSet.activation`):
``'softmax'`` logits and the ``'log_scores'`` of mask-classification heads
take the softmax cross-entropy (for log scores: of the normalised scores);
``'sigmoid'`` heads take the binary cross-entropy against the one-hot label,
and their probabilities are the per-class sigmoids.
"""
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from mmdag.registry import ATTACKS
from .base import IterativeAttack

__all__ = ['PGD', 'SegPGD', 'CosPGD', 'SignGradientAttack', 'target_ce', 'target_probs']

ACTIVATIONS = ('softmax', 'log_scores', 'sigmoid')


def target_ce(logits: Tensor, labels: Tensor, activation: str = 'softmax') -> Tensor:
    """Per-target cross-entropy ``[N]`` of ``logits [N, C]`` against ``labels [N]``."""
    if activation == 'sigmoid':
        onehot = F.one_hot(labels, logits.shape[1]).to(logits.dtype)
        return F.binary_cross_entropy_with_logits(logits, onehot, reduction='none').sum(1)
    if activation in ('softmax', 'log_scores'):
        return F.cross_entropy(logits, labels, reduction='none')
    raise ValueError(f'unknown activation {activation!r}; one of {ACTIVATIONS}')


def target_probs(logits: Tensor, activation: str = 'softmax') -> Tensor:
    """Per-target class probabilities ``[N, C]`` (per-class sigmoids for a
    sigmoid head)."""
    if activation == 'sigmoid':
        return logits.sigmoid()
    if activation in ('softmax', 'log_scores'):
        return logits.softmax(1)
    raise ValueError(f'unknown activation {activation!r}; one of {ACTIVATIONS}')


def uniform_start(x0: Tensor, mask: Optional[Tensor], seed: int, radius: float,
                  clip_range: Tuple[float, float]) -> Tensor:
    """A random start: uniform noise in ``[-radius, radius]`` from the
    image's own generator (drawn on the CPU, then moved: the same start on
    every device), zero outside the image's region (``mask``), with
    ``x0 + r`` clipped to the valid range; returns ``r``."""
    gen = torch.Generator().manual_seed(seed)
    noise = torch.rand(x0.shape, generator=gen, dtype=torch.float32)
    noise = ((2 * noise - 1) * radius).to(x0.device)
    if mask is not None:
        noise = noise * mask
    return (x0 + noise).clamp_(*clip_range) - x0


def finite_flags(grads: List[Tensor]) -> List[bool]:
    """Whether each gradient is finite, in one transfer to the host."""
    return torch.stack([torch.isfinite(g).all() for g in grads]).tolist()


def activation_of(targets) -> str:
    """The activation of a target set's logits (``'softmax'`` unless it says)."""
    return getattr(targets, 'activation', 'softmax')


class SignGradientAttack(IterativeAttack):
    """Projected sign-gradient ascent on a per-target loss in an L-inf ball.

    A subclass implements :meth:`weights`, the per-target weights of the
    cross-entropy (the loss is their weighted mean over the image's targets).

    Args:
        epsilon (float): L-inf budget on the 0..255 scale. Defaults to 8
            (8/255 on the 0..1 scale).
        alpha (float): step size on the 0..255 scale. Defaults to 2.55 (0.01
            on the 0..1 scale, SemSegBench's).
        max_iters (int): steps. Defaults to 20 (SemSegBench's).
        random_start (bool): start from a uniform point of the ball (clipped
            to the valid range), seeded per image. Defaults to True.
        quantize (bool): round the adversarial image to 8 bits at the end and
            check it again. Defaults to False.
        clip_range (tuple): valid pixel range. Defaults to (0, 255).
        seed (int): base seed of the random start. Defaults to 0.
    """

    early_stop = False

    def __init__(self, epsilon: float = 8.0, alpha: float = 2.55, max_iters: int = 20,
                 random_start: bool = True, quantize: bool = False,
                 clip_range: Tuple[float, float] = (0.0, 255.0), seed: int = 0) -> None:
        if epsilon is None or epsilon <= 0:
            raise ValueError(f'epsilon must be > 0 (0..255 scale), got {epsilon}')
        if alpha <= 0:
            raise ValueError(f'alpha must be > 0 (0..255 scale), got {alpha}')
        self.alpha = float(alpha)
        super().__init__(max_iters=max_iters, stop_fraction=0.0, epsilon=float(epsilon),
                         quantize=quantize, clip_range=clip_range, seed=seed)
        self.random_start = bool(random_start)

    def start(self, x0: Tensor, mask: Optional[Tensor], seed: int) -> Optional[Tensor]:
        """Uniform noise in ``[-epsilon, epsilon]`` from the image's own
        generator (CPU, then moved: the same start on every device), zero
        outside the image's region, clipped to the valid range."""
        if not self.random_start:
            return None
        return uniform_start(x0, mask, seed, self.epsilon, self.clip_range)

    def weights(self, m: int, logits: Tensor, labels: Tensor, targets) -> Tensor:
        """Per-target weights ``[N]`` of the cross-entropy at step ``m``
        (no gradient flows through them); ``targets`` is the image's
        :class:`~mmdag.attacks.targets.TargetSet`."""
        raise NotImplementedError

    def loss(self, m: int, logits: Tensor, labels: Tensor, state, active: Tensor,
             attacked: Tensor) -> Tensor:
        """The weighted mean cross-entropy of the image's targets (the state
        is its target set, for the activation and the correctness rule)."""
        ce = target_ce(logits, labels, activation_of(state))
        with torch.no_grad():
            w = self.weights(m, logits, labels, state)
        return (w * ce).sum() / max(labels.numel(), 1)

    def init_image(self, seed, labels, targets, clean_logits, correct):
        return correct, targets

    def update(self, m: int, x0: List[Tensor], r: List[Tensor],
               grads: List[Tensor]) -> List[object]:
        """``r + alpha * sign(g)``, projected; one transfer to the host for
        the batch's check: a non-finite gradient stops the image unchanged.
        A zero gradient is a step that moves nothing, not a stop: SegPGD's
        weights change with ``m``, so a later step may move (where a
        confident target's softmax saturates in float32, its cross-entropy
        gradient is exactly 0), as in the references."""
        finite = finite_flags(grads)
        return [self.project(x0[k], x0[k] + r[k] + self.alpha * grads[k].sign()) if ok
                else 'non_finite' for k, ok in enumerate(finite)]


@ATTACKS.register_module()
class PGD(SignGradientAttack):
    """PGD on the mean per-target cross-entropy (Madry et al. 2018, as the
    segmentation benchmarks run it). Arguments: :class:`SignGradientAttack`."""

    def weights(self, m, logits, labels, targets):
        return torch.ones_like(labels, dtype=logits.dtype)


@ATTACKS.register_module()
class SegPGD(SignGradientAttack):
    """SegPGD (Gu et al., ECCV 2022): the cross-entropy of targets still
    correct weighted ``1 - lambda_m`` and of those already wrong ``lambda_m``,
    ``lambda_m = m / (2 max_iters)`` (``m`` from 0: the paper's
    ``(t - 1) / 2T``), so the attack first pushes the correct targets and
    then, more and more, keeps the wrong ones wrong. Correctness is the
    target set's rule (argmax for softmax heads). Arguments:
    :class:`SignGradientAttack`."""

    def weights(self, m, logits, labels, targets):
        lam = m / (2 * self.max_iters) if self.max_iters else 0.0
        correct = targets.correct(logits, labels)
        return torch.where(correct, 1.0 - lam, lam).to(logits.dtype)


@ATTACKS.register_module()
class CosPGD(SignGradientAttack):
    """CosPGD (Agnihotri et al., ICML 2024): each target's cross-entropy
    weighted by the cosine similarity of its class probabilities and its
    one-hot label (detached), so targets still confidently correct weigh
    most. Arguments: :class:`SignGradientAttack`."""

    def weights(self, m, logits, labels, targets):
        p = target_probs(logits, activation_of(targets))
        onehot = F.one_hot(labels, logits.shape[1]).to(p.dtype)
        return F.cosine_similarity(p, onehot, dim=1)
