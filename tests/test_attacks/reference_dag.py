"""The DAG loop as it was before the speed work of the benchmark issue
(boolean-mask gathers, per-image host checks, a graph for the last check),
kept verbatim as the reference that the optimised loop must reproduce.
"""
from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from mmdag.attacks.dag import DAGResult
from mmdag.attacks.labels import STRATEGIES, derangement
from mmdag.attacks.stats import perturbation_stats
from mmdag.attacks.targets import TargetSet
from mmdag.errors import SettingError


class ReferenceDAG:
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
            kwargs['perm'] = derangement(num_classes, torch.Generator().manual_seed(self.seed))
        elif self.adv_labels == 'target':
            if not 0 <= self.target_class < num_classes:
                raise SettingError(
                    f'target_class {self.target_class} is out of range: the model scores '
                    f'{num_classes} classes (0 to {num_classes - 1}); set the attack\'s '
                    'target_class to one of them')
            kwargs['target'] = self.target_class
        return STRATEGIES[self.adv_labels](labels, num_classes, gen, **kwargs)

    # ------------------------------------------------------------------- core
    def __call__(self, images: Sequence[Tensor], targets: TargetSet,
                 seeds: Optional[Sequence[int]] = None) -> DAGResult:
        """Attack a batch.

        Args:
            images (Sequence[Tensor]): clean images ``[3, H, W]``, 0..255.
            targets (TargetSet): the targets of these images.
            seeds (Sequence[int], optional): one integer per image that makes
                its random choices independent of its place in the batch (e.g.
                a hash of its file name). Defaults to the batch position.
        """
        num = len(images)
        if len(targets) != num:
            raise ValueError(f'{num} images but targets for {len(targets)}')
        seeds = list(range(num)) if seeds is None else list(seeds)
        lo, hi = self.clip_range
        x0 = [img.detach().float() for img in images]
        r = [torch.zeros_like(x) for x in x0]
        labels = targets.labels
        adv: List[Optional[Tensor]] = [None] * num
        iters = [0] * num
        correct_frac = [0.0] * num
        status = [''] * num
        num_correct = [0] * num
        for i in range(num):
            if labels[i].numel() == 0:
                status[i] = 'no_targets'
                adv[i] = labels[i].new_empty(0)

        for m in range(self.max_iters + 1):
            run = [i for i in range(num) if not status[i]]
            if not run:
                break
            xs = [(x0[i] + r[i]).requires_grad_(True) for i in run]
            logits = targets.logits(xs, run)
            loss, stepping = 0.0, []
            for j, i in enumerate(run):
                z = logits[j]
                if not bool(torch.isfinite(z).all()):
                    # argmax of NaN / inf is no decision: never "flipped"
                    status[i] = 'non_finite'
                    correct_frac[i] = float('nan')   # unknown, never counted as flipped
                    if adv[i] is None:
                        adv[i] = torch.full_like(labels[i], -1)
                    iters[i] = m
                    continue
                ok = targets.correct(z, labels[i])
                if adv[i] is None:  # m == 0: z are the clean logits
                    adv[i] = self._choose_adv_labels(
                        self.seed * 1_000_003 + seeds[i], labels[i], targets, z)
                    # a target already wrong on the clean image is not attacked
                    # and not counted: it was never flipped by the attack (a
                    # sigmoid head's prior under the threshold, a pixel the
                    # model gets wrong)
                    num_correct[i] = int(ok.sum())
                    adv[i] = torch.where(ok, adv[i], torch.full_like(adv[i], -1))
                attacked = adv[i] >= 0
                active = ok & attacked   # T_m
                n_att = int(attacked.sum())
                n_act = int(active.sum())
                correct_frac[i] = n_act / n_att if n_att else 0.0
                if n_att == 0:
                    status[i] = 'none_correct' if num_correct[i] == 0 else 'no_targets'
                elif n_act <= self.stop_fraction * n_att:
                    status[i] = 'converged'
                elif m == self.max_iters:
                    status[i] = 'max_iters'
                else:
                    # Eq. (1) on the active set: f_l - f_l'
                    za = z[active]
                    loss = loss + (za.gather(1, labels[i][active, None])
                                   - za.gather(1, adv[i][active, None])).sum()
                    stepping.append(j)
                iters[i] = m
            if not stepping:
                continue
            grads = torch.autograd.grad(loss, [xs[j] for j in stepping])
            for j, g in zip(stepping, grads):
                i = run[j]
                r_m = -g.detach()        # = sum grad f_l' - grad f_l
                norm = r_m.abs().max()
                if not torch.isfinite(norm):
                    status[i] = 'non_finite'
                    continue
                if norm == 0:
                    status[i] = 'zero_grad'
                    continue
                x_next = (x0[i] + r[i] + (self.gamma / norm) * r_m).clamp_(lo, hi)
                r_next = x_next - x0[i]
                if self.epsilon is not None:
                    r_next = r_next.clamp_(-self.epsilon, self.epsilon)
                r[i] = r_next
                iters[i] = m + 1

        if self.quantize:
            r = [(x0[i] + r[i]).round().clamp(lo, hi) - x0[i] for i in range(num)]
            recheck = [i for i in range(num) if status[i] not in ('no_targets', 'none_correct')]
            if recheck:
                with torch.no_grad():
                    logits = targets.logits([x0[i] + r[i] for i in recheck], recheck)
                for z, i in zip(logits, recheck):
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
            s = perturbation_stats(r[i])
            s.update(iters=iters[i], num_targets=int(labels[i].numel()),
                     num_correct=num_correct[i],
                     correct_frac=correct_frac[i], converged=status[i] == 'converged',
                     status=status[i])
            stats.append(s)
        return DAGResult(
            adv_images=[x0[i] + r[i] for i in range(num)],
            perturbations=r,
            adv_labels=[a if a is not None else labels[i].new_empty(0) for i, a in enumerate(adv)],
            stats=stats)
