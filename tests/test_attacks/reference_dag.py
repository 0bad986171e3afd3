"""The DAG loop as it was before the speed work of the benchmark issue
(boolean-mask gathers, per-image host checks, a graph for the last check),
kept verbatim as the reference that the optimised loop must reproduce.
"""
from typing import List, Optional, Sequence

import torch
from torch import Tensor

from mmdag.attacks.checks import round_in_bounds
from mmdag.attacks.dag import DAG, DAGResult
from mmdag.attacks.stats import perturbation_stats
from mmdag.attacks.targets import TargetSet


class ReferenceDAG(DAG):
    """:class:`~mmdag.attacks.DAG` with its ``__call__`` as it was before the
    speed work (the settings and the label choice, unchanged, are DAG's)."""

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
            # the rounding is DAG's own (kept inside the epsilon ball since the
            # review; the former line rounded and clamped to the range only)
            r = [round_in_bounds(x0[i], r[i], self.clip_range, self.epsilon) - x0[i]
                 for i in range(num)]
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
