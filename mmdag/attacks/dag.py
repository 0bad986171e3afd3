"""Dense Adversary Generation (Xie et al., ICCV 2017, Algorithm 1).

Plain PyTorch (and mmdag's registry); no mmdet or mmseg import.
The attack sees float images on the
0..255 scale and a :class:`~mmdag.attacks.targets.TargetSet`. The loop and
its bookkeeping are :class:`~mmdag.attacks.base.IterativeAttack`'s; DAG is
its loss (Eq. (1) on the active set), its step (``gamma / ||r||_inf``) and
its adversarial labels.
"""
import math
from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from mmdag.registry import ATTACKS
from .base import STATUS, AttackResult, IterativeAttack
from .labels import STRATEGIES, draw_adv_labels
from .targets import TargetSet

#: The result of :class:`DAG` (the attack-neutral result, with adversarial labels).
DAGResult = AttackResult

__all__ = ['DAG', 'DAGResult', 'STATUS']


@ATTACKS.register_module()
class DAG(IterativeAttack):
    """Dense Adversary Generation, batched, with per-image early stop.

    For every image ``m = 0, 1, ...``: the active set ``T_m`` holds the targets
    still classified as their true label; the step is
    ``r_m = sum_{t in T_m} grad f_{l'}(X_m, t) - grad f_l(X_m, t)`` (the
    negative gradient of Eq. (1) restricted to ``T_m``), normalised to
    ``gamma / ||r_m||_inf`` per image and accumulated. An image stops when its
    active set is empty (or below ``stop_fraction`` of its targets); the batch
    stops when every image stopped or after ``max_iters`` updates. An image
    that stopped is not forwarded again.

    Args:
        gamma (float): L-inf norm of each step on the 0..255 scale.
            Defaults to 0.5 (the paper's).
        max_iters (int): maximum number of updates per image. Defaults to 200.
        adv_labels (str): adversarial label strategy, one of ``'random'``
            (a random wrong class per target, the paper's), ``'permute'`` (one
            fixed class permutation without fixed points), ``'target'`` (all
            targets to ``target_class``), ``'least_likely'``.
            Defaults to ``'random'``.
        target_class (int): the class of the ``'target'`` strategy.
            Defaults to 0.
        exclude_classes (Sequence[int]): classes never used as adversarial
            labels (e.g. a detector's background). Defaults to ().
        stop_fraction (float): an image stops once at most this fraction of
            its targets is still correct. 0 is the paper's rule (empty active
            set); the authors' code used 0.01 for segmentation. Defaults to 0.
        epsilon (float, optional): L-inf budget on ``r`` (0..255 scale);
            None is unbounded, as in the paper. Defaults to None.
        quantize (bool): round ``X + r`` to integers at the end (a real 8-bit
            image; correctness is then re-checked on it). Defaults to False.
        clip_range (tuple): valid pixel range; ``X + r`` is clipped to it after
            every step, so a step that hits the range is shorter than gamma.
            Defaults to (0, 255).
        seed (int): seed of the label strategy and of the class permutation.
            Per-image generators are derived from it and from ``seeds`` passed
            to :meth:`__call__`. Defaults to 0.
    """

    def __init__(self,
                 gamma: float = 0.5,
                 max_iters: int = 200,
                 adv_labels: str = 'random',
                 target_class: int = 0,
                 exclude_classes: Sequence[int] = (),
                 stop_fraction: float = 0.0,
                 epsilon: Optional[float] = None,
                 quantize: bool = False,
                 clip_range: Tuple[float, float] = (0.0, 255.0),
                 seed: int = 0) -> None:
        if gamma <= 0:
            raise ValueError(f'gamma must be > 0, got {gamma}')
        if max_iters < 0:
            raise ValueError(f'max_iters must be >= 0, got {max_iters}')
        if adv_labels not in STRATEGIES:
            raise ValueError(
                f'unknown adv_labels {adv_labels!r}; choose one of {sorted(STRATEGIES)}')
        # the settings keep the order they always had (the report lists them)
        self.gamma = float(gamma)
        super().__init__(max_iters=max_iters, stop_fraction=stop_fraction, epsilon=epsilon,
                         quantize=quantize, clip_range=clip_range, seed=seed)
        self.adv_labels = adv_labels
        self.target_class = int(target_class)
        self.exclude_classes = tuple(int(c) for c in exclude_classes)

    # ------------------------------------------------------------------ labels
    def _choose_adv_labels(self, i_seed: int, labels: Tensor, targets: TargetSet,
                           clean_logits: Tensor) -> Tensor:
        return draw_adv_labels(self, i_seed, labels, targets, clean_logits)

    def settings(self) -> dict:
        """DAG's arguments. Without ``type``: the reports and the saved
        states of runs made before the attack registry hold DAG's settings
        so, and a run is resumed only with equal settings."""
        order = ('gamma', 'max_iters', 'adv_labels', 'target_class', 'exclude_classes',
                 'stop_fraction', 'epsilon', 'quantize', 'clip_range', 'seed')
        return {k: getattr(self, k) for k in order}

    def init_image(self, seed: int, labels: Tensor, targets: TargetSet, clean_logits: Tensor,
                   correct: Tensor) -> Tuple[Tensor, Tensor]:
        """The adversarial labels, drawn on the clean logits; a target already
        wrong on the clean image gets ``-1`` and is not attacked."""
        a = self._choose_adv_labels(seed, labels, targets, clean_logits)
        adv = torch.where(correct, a, torch.full_like(a, -1))
        return adv >= 0, adv

    def loss(self, m: int, logits: Tensor, labels: Tensor, adv: Tensor, active: Tensor,
             attacked: Tensor) -> Tensor:
        """Eq. (1) on the active set, ``f_l - f_l'``, as a masked sum of
        gathers (cheaper to differentiate than boolean-mask rows); its
        negative gradient is ``r_m = sum grad f_l' - grad f_l``."""
        pair = logits.gather(1, torch.stack((labels, adv.clamp_min(0)), 1))
        return ((pair[:, 0] - pair[:, 1]) * active).sum()

    def update(self, m: int, x0: List[Tensor], r: List[Tensor],
               grads: List[Tensor]) -> List[object]:
        """``r + gamma / ||r_m||_inf * r_m`` per image, ``r_m`` the negative
        gradient; one transfer to the host for the batch's norms."""
        r_ms = [-g for g in grads]
        norms = torch.stack([r_m.abs().max() for r_m in r_ms])
        out = []
        for k, norm in enumerate(norms.tolist()):
            if not math.isfinite(norm):
                out.append('non_finite')
            elif norm == 0:
                out.append('zero_grad')
            else:
                out.append(self.project(x0[k], x0[k] + r[k] + (self.gamma / norms[k]) * r_ms[k]))
        return out

    def labels_of(self, states: list, attacked: List[Tensor],
                  labels: List[Tensor]) -> List[Tensor]:
        return [lab.new_empty(0) if adv is None else torch.where(ok, adv, torch.full_like(adv, -1))
                for adv, ok, lab in zip(states, attacked, labels)]

    def __call__(self, images: Sequence[Tensor], targets: TargetSet,
                 seeds: Optional[Sequence[int]] = None,
                 regions: Optional[Sequence[Optional[Tuple[int, int]]]] = None) -> DAGResult:
        """Attack a batch (see :meth:`IterativeAttack.__call__`)."""
        return super().__call__(images, targets, seeds, regions)
