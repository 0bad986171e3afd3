"""Dense Adversary Generation (Xie et al., ICCV 2017, Algorithm 1).

Plain PyTorch; no OpenMMLab import. The attack sees float images on the
0..255 scale and a :class:`~mmdag.attacks.targets.TargetSet`.
"""
import math
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from mmdag.errors import SettingError
from .labels import STRATEGIES, class_derangement
from .stats import crop, perturbation_stats, region_mask
from .targets import TargetSet

#: Why an image stopped being updated.
STATUS = ('converged', 'max_iters', 'zero_grad', 'non_finite', 'no_targets', 'none_correct',
          'undone_by_rounding')


@dataclass
class DAGResult:
    """What one attack on a batch returns (one entry per image).

    Attributes:
        adv_images: ``X + r`` (float, 0..255, clipped; integer-valued when
            ``quantize=True``).
        perturbations: ``r``, the accumulated perturbation.
        adv_labels: adversarial label of each target (``-1``: not attacked).
        stats: per image ``iters`` (updates applied), ``p`` (perceptibility),
            ``linf`` (max absolute intensity, 0..255 scale), ``num_targets``,
            ``num_correct`` (targets correct on the clean image: only these
            are attacked and counted), ``correct_frac`` (fraction of attacked
            targets still correct on the returned image), ``converged``
            (active set reached the stop rule), ``status`` (one of
            :data:`STATUS`), ``trace`` (the fraction of attacked targets
            still correct at each check of the loop, ``X_0`` (1.0) to the
            last: ``iters + 1`` values when the loop ran to its end; empty
            when nothing was attacked), ``forwards`` and ``backwards`` (the
            forward and backward passes the image took part in: the loop's
            and the re-check of ``quantize``; target building and the
            predictions are not counted).
    """
    adv_images: List[Tensor]
    perturbations: List[Tensor]
    adv_labels: List[Tensor]
    stats: List[dict] = field(default_factory=list)


class DAG:
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
            raise ValueError(f'unknown adv_labels {adv_labels!r}; choose one of {sorted(STRATEGIES)}')
        if not 0 <= stop_fraction < 1:
            raise ValueError(f'stop_fraction must be in [0, 1), got {stop_fraction}')
        if epsilon is not None and epsilon <= 0:
            raise ValueError(f'epsilon must be > 0 or None, got {epsilon}')
        self.gamma = float(gamma)
        self.max_iters = int(max_iters)
        self.adv_labels = adv_labels
        self.target_class = int(target_class)
        self.exclude_classes = tuple(int(c) for c in exclude_classes)
        self.stop_fraction = float(stop_fraction)
        self.epsilon = epsilon
        self.quantize = quantize
        self.clip_range = clip_range
        self.seed = int(seed)

    # ------------------------------------------------------------------ labels
    def _choose_adv_labels(self, i_seed: int, labels: Tensor, targets: TargetSet,
                           clean_logits: Tensor) -> Tensor:
        num_classes = targets.num_classes
        gen = torch.Generator().manual_seed(i_seed)
        exclude = tuple(self.exclude_classes) + tuple(targets.exclude_adv)
        kwargs = dict(clean_logits=clean_logits, exclude=exclude)
        if self.adv_labels == 'permute':
            # one permutation for the whole run: it depends on the base seed only
            kwargs['perm'] = class_derangement(num_classes, exclude,
                                               torch.Generator().manual_seed(self.seed))
        elif self.adv_labels == 'target':
            if not 0 <= self.target_class < num_classes:
                raise SettingError(
                    f'target_class {self.target_class} is out of range: the model scores '
                    f'{num_classes} classes (0 to {num_classes - 1}); set the attack\'s '
                    'target_class to one of them')
            kwargs['target'] = self.target_class
        return STRATEGIES[self.adv_labels](labels, num_classes, gen, **kwargs)

    def _round(self, x0: Tensor, r: Tensor) -> Tensor:
        """``X + r`` rounded to integers inside the valid range and, with an
        epsilon, inside the epsilon ball: rounding alone may step up to 0.5
        outside it (epsilon 2.7 on an integer pixel rounds ``X + 2.7`` to
        ``X + 3``), so the rounded image is clamped to the integers of the ball."""
        lo, hi = self.clip_range
        x = (x0 + r).round().clamp(lo, hi)
        if self.epsilon is not None:
            x = torch.minimum(torch.maximum(x, (x0 - self.epsilon).ceil()),
                              (x0 + self.epsilon).floor())
        return x

    # ------------------------------------------------------------------- core
    def __call__(self, images: Sequence[Tensor], targets: TargetSet,
                 seeds: Optional[Sequence[int]] = None,
                 regions: Optional[Sequence[Optional[Tuple[int, int]]]] = None) -> DAGResult:
        """Attack a batch.

        Args:
            images (Sequence[Tensor]): clean images ``[3, H, W]``, 0..255.
            targets (TargetSet): the targets of these images.
            seeds (Sequence[int], optional): one integer per image that makes
                its random choices independent of its place in the batch (e.g.
                a hash of its file name). Defaults to the batch position.
            regions (Sequence, optional): per image, ``(h, w)`` of the image
                inside padding that the test pipeline added (RTMDet, YOLOX
                pad to 640x640), or None for the whole image. The
                perturbation is zero outside the region (each step is masked
                before it is normalised) and the statistics measure the
                region only. Defaults to whole images.
        """
        num = len(images)
        if len(targets) != num:
            raise ValueError(f'{num} images but targets for {len(targets)}')
        seeds = list(range(num)) if seeds is None else list(seeds)
        regions = [None] * num if regions is None else list(regions)
        masks = [region_mask(x, reg) for x, reg in zip(images, regions)]
        lo, hi = self.clip_range
        x0 = [img.detach().float() for img in images]
        r = [torch.zeros_like(x) for x in x0]
        labels = targets.labels
        adv: List[Optional[Tensor]] = [None] * num
        iters = [0] * num
        correct_frac = [0.0] * num
        status = [''] * num
        num_correct = [0] * num
        trace: List[List[float]] = [[] for _ in range(num)]
        forwards, backwards = [0] * num, [0] * num
        for i in range(num):
            if labels[i].numel() == 0:
                status[i] = 'no_targets'
                adv[i] = labels[i].new_empty(0)

        for m in range(self.max_iters + 1):
            run = [i for i in range(num) if not status[i]]
            if not run:
                break
            # the last forward only checks what is still correct: no graph
            last = m == self.max_iters
            with torch.set_grad_enabled(not last):
                xs = [(x0[i] + r[i]).requires_grad_(not last) for i in run]
                logits = targets.logits(xs, run)
            # per-image state stays on the device; one transfer to the host
            # per iteration decides which images step
            active, counts = [], []
            for j, i in enumerate(run):
                z = logits[j]
                ok = targets.correct(z, labels[i])
                if adv[i] is None:  # m == 0: z are the clean logits
                    a = self._choose_adv_labels(self.seed * 1_000_003 + seeds[i], labels[i],
                                                targets, z)
                    # a target already wrong on the clean image is not attacked
                    # and not counted: it was never flipped by the attack (a
                    # sigmoid head's prior under the threshold, a pixel the
                    # model gets wrong)
                    adv[i] = torch.where(ok, a, torch.full_like(a, -1))
                    first = ok.sum()
                else:
                    first = ok.new_zeros((), dtype=torch.long)
                attacked = adv[i] >= 0
                act = ok & attacked   # T_m
                active.append(act)
                counts.append(torch.stack((torch.isfinite(z).all().long(), attacked.sum(),
                                           act.sum(), first)))
            loss, stepping = 0.0, []
            for j, (finite, n_att, n_act, first) in enumerate(torch.stack(counts).tolist()):
                i = run[j]
                iters[i] = m
                forwards[i] += 1
                if not finite:
                    # argmax of NaN / inf is no decision: never "flipped"
                    status[i] = 'non_finite'
                    correct_frac[i] = float('nan')   # unknown, never counted as flipped
                    if m == 0:
                        adv[i] = torch.full_like(labels[i], -1)
                    continue
                if m == 0:
                    num_correct[i] = first
                correct_frac[i] = n_act / n_att if n_att else 0.0
                if n_att:
                    trace[i].append(round(correct_frac[i], 6))
                if n_att == 0:
                    status[i] = 'none_correct' if num_correct[i] == 0 else 'no_targets'
                elif n_act <= self.stop_fraction * n_att:
                    status[i] = 'converged'
                elif last:
                    status[i] = 'max_iters'
                else:
                    # Eq. (1) on the active set: f_l - f_l', as a masked sum of
                    # gathers (cheaper to differentiate than boolean-mask rows)
                    pair = logits[j].gather(1, torch.stack((labels[i], adv[i].clamp_min(0)), 1))
                    loss = loss + ((pair[:, 0] - pair[:, 1]) * active[j]).sum()
                    stepping.append(j)
            if not stepping:
                continue
            grads = torch.autograd.grad(loss, [xs[j] for j in stepping])
            r_ms = [-g.detach() for g in grads]          # = sum grad f_l' - grad f_l
            # nothing moves in the padding around an image
            r_ms = [r_m if masks[run[j]] is None else r_m * masks[run[j]]
                    for j, r_m in zip(stepping, r_ms)]
            norms = torch.stack([r_m.abs().max() for r_m in r_ms])
            for k, (j, norm) in enumerate(zip(stepping, norms.tolist())):
                i = run[j]
                backwards[i] += 1
                if not math.isfinite(norm):
                    status[i] = 'non_finite'
                    continue
                if norm == 0:
                    status[i] = 'zero_grad'
                    continue
                x_next = (x0[i] + r[i] + (self.gamma / norms[k]) * r_ms[k]).clamp_(lo, hi)
                r_next = x_next - x0[i]
                if self.epsilon is not None:
                    r_next = r_next.clamp_(-self.epsilon, self.epsilon)
                r[i] = r_next
                iters[i] = m + 1

        if self.quantize:
            r = [self._round(x0[i], r[i]) - x0[i] for i in range(num)]
            recheck = [i for i in range(num) if status[i] not in ('no_targets', 'none_correct')]
            if recheck:
                with torch.no_grad():
                    logits = targets.logits([x0[i] + r[i] for i in recheck], recheck)
                for z, i in zip(logits, recheck):
                    forwards[i] += 1
                    if not bool(torch.isfinite(z).all()):
                        status[i] = 'non_finite'
                        correct_frac[i] = float('nan')
                        continue
                    attacked = adv[i] >= 0
                    n_att = int(attacked.sum())
                    n_ok = int((targets.correct(z, labels[i]) & attacked).sum())
                    correct_frac[i] = n_ok / n_att if n_att else 0.0
                    # the status describes the returned (rounded) image too
                    if n_att and n_ok <= self.stop_fraction * n_att:
                        status[i] = 'converged'
                    elif status[i] == 'converged':
                        status[i] = 'undone_by_rounding'

        stats = []
        for i in range(num):
            s = perturbation_stats(crop(r[i], regions[i]))
            s.update(iters=iters[i], num_targets=int(labels[i].numel()),
                     num_correct=num_correct[i],
                     correct_frac=correct_frac[i], converged=status[i] == 'converged',
                     status=status[i], trace=trace[i], forwards=forwards[i],
                     backwards=backwards[i])
            stats.append(s)
        return DAGResult(
            adv_images=[x0[i] + r[i] for i in range(num)],
            perturbations=r,
            adv_labels=[a if a is not None else labels[i].new_empty(0) for i, a in enumerate(adv)],
            stats=stats)
