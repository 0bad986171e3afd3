"""What an attack on a batch returns: :class:`AttackResult`."""
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from torch import Tensor

__all__ = ['AttackResult']


@dataclass
class AttackResult:
    """What one attack on a batch returns (one entry per image).

    Attributes:
        adv_images: ``X + r`` (float, 0..255, clipped; integer-valued when
            the attack quantizes).
        perturbations: ``r``, the accumulated perturbation.
        adv_labels: an attack with adversarial labels (DAG): the label of
            each target (``-1``: not attacked); None for an attack without.
        stats: per image ``iters`` (updates applied), ``p`` (perceptibility),
            ``linf`` (max absolute intensity, 0..255 scale), ``num_targets``,
            ``num_correct`` (targets correct on the clean image: only these
            are attacked and counted), ``correct_frac`` (fraction of attacked
            targets still correct on the returned image; 0 without attacked
            targets), ``converged`` (the stop rule was reached), ``status``
            (one of :data:`STATUS`), ``trace`` (the fraction of attacked
            targets still correct at each check of the loop, ``X_0`` (1.0)
            to the last: ``iters + 1`` values when the loop ran to its end;
            empty without attacked targets), ``forwards`` and
            ``backwards`` (the forward and backward passes the image took
            part in: the loop's, a clean check before a random start and
            the re-check of ``quantize``; target building and the
            predictions are not counted). An image without a decision on
            the clean image (``'non_finite'``), or, for an attack whose loss
            needs correct targets, without an attacked target
            (``'none_correct'``, ``'no_targets'``), comes back exactly clean
            (``r`` is 0).
        sweep: an epsilon sweep (:class:`~mmdag.attacks.EpsilonSweep`): the
            result at every epsilon, smallest first (the fields above are
            the largest's); None otherwise.
        members: an ensemble (:class:`~mmdag.attacks.WorstCase`): each
            member's own result on the batch, by member name; None otherwise.
    """
    adv_images: List[Tensor]
    perturbations: List[Tensor]
    adv_labels: Optional[List[Tensor]] = None
    stats: List[dict] = field(default_factory=list)
    sweep: Optional[Dict[float, 'AttackResult']] = None
    members: Optional[Dict[str, 'AttackResult']] = None
