"""Transfer as an attack: replay given perturbations and measure them.

Plain PyTorch (and mmdag's registry); no mmdet or mmseg import.
No optimisation: ``X + r`` clipped to
the valid range, and the statistics an attack reports, measured on this
model's targets.
"""
from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from .base import AttackResult
from .stats import crop, perturbation_stats, region_mask
from .targets import TargetSet


class Replay:
    """Add given perturbations (e.g. an attack's on another model) to a batch.

    The statistics are those of an attack run, measured on this model:
    ``correct_frac`` is the fraction of this model's targets correct on the
    clean image that are still correct on the perturbed one; ``iters`` 0;
    ``status`` ``'transfer'``, ``converged`` when none is still correct.

    Args:
        attack: the run's configured attack, whose ``clip_range``, ``seed``
            and settings the replay keeps (the report and a resumed run's
            check name them as for an attack run).
    """

    def __init__(self, attack) -> None:
        self.attack = attack
        self.clip_range = attack.clip_range
        self.seed = attack.seed

    def settings(self) -> dict:
        return self.attack.settings()

    def __call__(self, images: Sequence[Tensor], targets: TargetSet,
                 seeds: Optional[Sequence[int]] = None,
                 regions: Optional[Sequence[Optional[Tuple[int, int]]]] = None,
                 perturbations: Sequence[Tensor] = ()) -> AttackResult:
        """Replay ``perturbations`` (one per image, in the images' frame)."""
        if len(perturbations) != len(images):
            raise ValueError(f'{len(images)} images but {len(perturbations)} perturbations')
        regions = [None] * len(images) if regions is None else list(regions)
        device = images[0].device
        lo, hi = self.clip_range
        # the padding around an image stays as the pipeline made it
        rs = [r.to(device).float() for r in perturbations]
        masks = [region_mask(x, reg) for x, reg in zip(images, regions)]
        rs = [r if m is None else r * m for r, m in zip(rs, masks)]
        adv = [(x + r).clamp(lo, hi) for x, r in zip(images, rs)]
        rs = [a - x for a, x in zip(adv, images)]
        with torch.no_grad():
            ids = list(range(len(adv)))
            logits = targets.logits(adv, ids)
            clean = targets.logits(images, ids)
        stats = [self._stats(z, z0, lab, crop(r, reg), targets)
                 for z, z0, lab, r, reg in zip(logits, clean, targets.labels, rs, regions)]
        return AttackResult(adv_images=adv, perturbations=rs,
                            adv_labels=[lab.new_full(lab.shape, -1) for lab in targets.labels],
                            stats=stats)

    @staticmethod
    def _stats(z: Tensor, z0: Tensor, lab: Tensor, r: Tensor, targets: TargetSet) -> dict:
        n = int(lab.numel())
        # as in an attack run: only the targets correct on the clean image count
        ok = targets.correct(z0, lab) if n else torch.zeros(0, dtype=torch.bool)
        n_ok = int(ok.sum())
        finite = bool(torch.isfinite(z).all())
        frac = (float((targets.correct(z, lab) & ok).sum()) / n_ok if n_ok and finite
                else float('nan') if n_ok else 0.0)
        status = ('no_targets' if not n else 'none_correct' if not n_ok
                  else 'non_finite' if not finite else 'transfer')
        s: dict = perturbation_stats(r)
        s.update(iters=0, num_targets=n, num_correct=n_ok, correct_frac=frac,
                 converged=status == 'transfer' and frac == 0.0, status=status)
        return s


__all__: List[str] = ['Replay']
