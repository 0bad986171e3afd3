"""DetPGD: PGD on a detector's own training loss against the ground truth.

Plain PyTorch (and mmdag's registry); no mmdet or mmseg import.
The projected sign step of
:class:`~mmdag.attacks.budgeted.SignGradientAttack` (uniform random start,
``epsilon`` and ``alpha`` on the 0..255 scale of the images the data
preprocessor receives) ascending the loss the detector trains on, as ARES
2.0 and DetecBench attack MMDetection models. The loss comes from the target
set (:meth:`~mmdag.attacks.TargetSet.detector_loss`; for mmdet models
:mod:`mmdag.targets.det_loss`): the detector's ``loss()`` with its
normalisation and dropout layers in eval mode (the model's state does not
change), one image at a time (an image's gradient does not depend on its
batch), its random draws (RoI samplers, DINO's denoising noise) seeded per
image and step.

Where DetecBench takes the gradient on the un-normalised 0..1 input and ARES
on the normalised tensor, the step here is taken on the 0..255 image, through
the model's own data preprocessor, so ``epsilon=8`` is the 8/255 of papers
that scale to 0..1.

``terms='all'`` ascends every loss term (DetecBench); ``terms='cls'`` the
classification and objectness terms only (ARES's choice: the box terms
reward moving boxes, not losing objects). The statistics are DAG's, on the
same targets (proposals, priors or queries matched to an object): a target
flips when it is no longer detected as its object's class. The loss needs
no such target: an image with none correct on the clean image, or none
matched, is attacked all the same (its status still says so,
``'none_correct'`` or ``'no_targets'``, and no mean of the statistics
counts it). Defaults: TOG's budget and schedule, ``epsilon=8``,
``alpha=2``, ``max_iters=10``.
"""
from typing import List, Tuple

import torch
from torch import Tensor

from mmdag.registry import ATTACKS
from .budgeted import SignGradientAttack

__all__ = ['DetPGD']

TERMS = ('all', 'cls')


@ATTACKS.register_module()
class DetPGD(SignGradientAttack):
    """PGD on the detector's own loss (module docstring).

    Args:
        epsilon (float): L-inf budget on the 0..255 scale. Defaults to 8.
        alpha (float): step on the 0..255 scale. Defaults to 2.
        max_iters (int): steps. Defaults to 10.
        terms (str): ``'all'`` loss terms or ``'cls'`` (classification and
            objectness only). Defaults to ``'all'``.
        random_start, quantize, clip_range, seed: as
            :class:`~mmdag.attacks.budgeted.SignGradientAttack`.
    """

    loss_on_logits = False
    needs_correct_targets = False

    def __init__(self, epsilon: float = 8.0, alpha: float = 2.0, max_iters: int = 10,
                 terms: str = 'all', random_start: bool = True, quantize: bool = False,
                 clip_range: Tuple[float, float] = (0.0, 255.0), seed: int = 0) -> None:
        if terms not in TERMS:
            raise ValueError(f"terms must be one of {TERMS}, got {terms!r}")
        super().__init__(epsilon=epsilon, alpha=alpha, max_iters=max_iters,
                         random_start=random_start, quantize=quantize, clip_range=clip_range,
                         seed=seed)
        self.terms = terms

    def init_image(self, seed, labels, targets, clean_logits, correct):
        """The image's seed is its state: the loss's draws at step ``m`` are
        seeded from it."""
        return correct, int(seed)

    def images_loss(self, m: int, images: List[Tensor], indices: List[int], targets,
                    states: list) -> Tensor:
        seeds = [s * 1_000_003 + m for s in states]
        losses = targets.detector_loss(images, indices, seeds, self.terms)
        return torch.stack([loss.reshape(()) for loss in losses]).sum()
