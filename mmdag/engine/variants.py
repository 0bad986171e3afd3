"""The variants a run predicts besides the loop's ADVR, named and made.

Side by side, so that the two agree: :func:`variant_names`, what
:class:`~mmdag.engine.AttackHook` announces to the metric before the
first batch, and :func:`variant_images`, the images it predicts for them in
each batch.

- ``orig``: the clean images;
- ``perm``: each image plus its perturbation with the pixels permuted;
- ``advr_uint8``: the adversarial images rounded to 8 bits inside the budget;
- in an epsilon sweep, at each epsilon but the largest (the loop's): its
  ``advr@<eps>`` and the above (``perm@<eps>``...);
- with an ensemble (a worst case), at every epsilon: each member's own
  adversarial images, ``advr[<member>]``.
"""
from typing import Iterator, List, Optional, Sequence, Tuple

from torch import Tensor

from mmdag.attacks import AttackResult
from mmdag.attacks.checks import round_in_bounds
from mmdag.contract import EXTRA_VARIANTS, SWEPT_VARIANTS, member_variant, swept
from .step import perm_images

__all__ = ['variant_names', 'variant_images']


def variant_names(variants: Sequence[str], other_epsilons: Sequence[float],
                  members: Sequence[str]) -> List[str]:
    """The variants a run predicts: ``advr`` (the loop's), the extra
    ``variants``, each other epsilon's swept ones and each member's."""
    made = ['advr'] + [v for v in EXTRA_VARIANTS if v in variants]
    for e in other_epsilons:
        made += [swept(v, e) for v in SWEPT_VARIANTS if v == 'advr' or v in variants]
    for e in [None, *other_epsilons]:
        made += [swept(member_variant(n), e) for n in members]
    return made


def variant_images(clean: Sequence[Tensor], samples: list,
                   levels: Sequence[Tuple[Optional[float], AttackResult]],
                   variants: Sequence[str], budget: Optional[float], perm_seed: int,
                   clip_range: Tuple[float, float]) -> Iterator[Tuple[str, List[Tensor]]]:
    """``(name, images)`` of every variant of :func:`variant_names` but the
    loop's ``advr``, one at a time. ``levels``: ``(None, result)`` of the
    run's (largest) epsilon, then ``(epsilon, result)`` of each other one;
    ``budget``: the run's epsilon (None: unbounded), for the rounding."""
    if 'orig' in variants:
        yield 'orig', list(clean)
    for e, res in levels:
        if e is not None:
            yield swept('advr', e), res.adv_images
        for name, member in (res.members or {}).items():
            yield swept(member_variant(name), e), member.adv_images
        if 'perm' in variants:
            yield swept('perm', e), perm_images(clean, res.perturbations, samples, perm_seed,
                                                clip_range)
        if 'advr_uint8' in variants:
            eps = budget if e is None else e
            yield swept('advr_uint8', e), [
                round_in_bounds(x.to(r.device).float(), r, clip_range, eps)
                for x, r in zip(clean, res.perturbations)]
