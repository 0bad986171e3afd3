"""What holds for every attack's returned images, checked or made so.

- :func:`round_in_bounds`: the 8-bit image of ``quantize``, inside the valid
  range and the epsilon ball;
- :func:`recheck_rounded`: ``quantize``'s 8-bit images checked again;
- :func:`check_bounds`: on in every run, cheap (three reductions per image,
  one transfer to the host per batch): every returned image inside the valid
  range and, with a budget, inside the epsilon ball, or an error.
"""
from typing import List, Optional, Tuple

import torch
from torch import Tensor

from mmdag.contract import NOTHING_ATTACKED
from mmdag.errors import MMDagError

#: float rounding allowed on the 0..255 scale (``x0 + (clip(x) - x0)`` need
#: not give back ``clip(x)`` to the last bit)
BOUNDS_TOL = 1e-3


class BoundsError(MMDagError):
    """An attack returned an image outside the valid range or its budget."""


def round_in_bounds(x0: Tensor, r: Tensor, clip_range: Tuple[float, float],
                    epsilon: Optional[float]) -> Tensor:
    """``X + r`` rounded to integers inside the valid range and, with an
    epsilon, inside the epsilon ball: rounding alone may step up to 0.5
    outside it (epsilon 2.7 on an integer pixel rounds ``X + 2.7`` to
    ``X + 3``), so the rounded image is clamped to the integers of the ball."""
    lo, hi = clip_range
    x = (x0 + r).round().clamp(lo, hi)
    if epsilon is not None:
        x = torch.minimum(torch.maximum(x, (x0 - epsilon).ceil()), (x0 + epsilon).floor())
    return x


def check_bounds(name: str, x0: List[Tensor], r: List[Tensor],
                 clip_range: Tuple[float, float], epsilon: Optional[float]) -> None:
    """Raise :class:`BoundsError` if an image ``x0 + r`` left the valid range
    or ``r`` the epsilon ball (beyond float rounding): a figure of an attack
    that broke its budget is never reported."""
    if not r:
        return
    lo, hi = clip_range
    rows = []
    for xi, ri in zip(x0, r):
        x = xi + ri
        rows.append(torch.stack((ri.abs().amax(), (lo - x).amax(), (x - hi).amax())))
    eps = float('inf') if epsilon is None else epsilon
    for i, (linf, below, above) in enumerate(torch.stack(rows).tolist()):
        if linf > eps + BOUNDS_TOL or below > BOUNDS_TOL or above > BOUNDS_TOL:
            raise BoundsError(
                f'{name} returned image {i} outside its bounds (L-inf {linf:.4f}, epsilon '
                f'{epsilon}, range {tuple(clip_range)}, {max(below, above, 0.0):.4f} outside '
                "it): a fault of the attack's update; report it with the attack's settings")


def recheck_rounded(attack, x0: List[Tensor], r: List[Tensor], targets, attacked: list,
                    status: list, correct_frac: list, forwards: list) -> None:
    """``quantize``: round the images to 8 bits inside the bounds
    (:func:`round_in_bounds`) and check them again, so the status and
    ``correct_frac`` describe the returned (rounded) image; in place."""
    num = len(x0)
    for i in range(num):
        r[i] = round_in_bounds(x0[i], r[i], attack.clip_range, attack.epsilon) - x0[i]
    # an image without an attacked target has nothing to count (its clean
    # logits were not finite, or its loss needs no correct target)
    recheck = [i for i in range(num)
               if status[i] not in NOTHING_ATTACKED and bool(attacked[i].any())]
    if not recheck:
        return
    labels = targets.labels
    with torch.no_grad():
        logits = targets.logits([x0[i] + r[i] for i in recheck], recheck)
    for z, i in zip(logits, recheck):
        forwards[i] += 1
        if not bool(torch.isfinite(z).all()):
            status[i] = 'non_finite'
            correct_frac[i] = float('nan')
            continue
        n_att = int(attacked[i].sum())
        n_ok = int((targets.correct(z, labels[i]) & attacked[i]).sum())
        correct_frac[i] = n_ok / n_att if n_att else 0.0
        if n_att and n_ok <= attack.stop_fraction * n_att:
            status[i] = 'converged'
        elif status[i] == 'converged':
            status[i] = 'undone_by_rounding'
