"""TOG's attacks as the authors compute them (Chow et al., "Adversarial
Objectness Gradient Attacks in Real-time Object Detection Systems", TPS
2020; github git-disl/TOG, ``tog/attacks.py``).

Plain PyTorch (and mmdag's registry); no mmdet or mmseg import.
TOG's step is the projected sign step of
:class:`~mmdag.attacks.budgeted.SignGradientAttack`: a uniform random start in
the ``epsilon`` ball, then ``max_iters`` steps ``x -= alpha * sign(grad)`` on
the loss TOG descends, clipped to the ball and the valid range. The authors'
defaults, on the 0..1 scale: epsilon 8/255, step 2/255, 10 iterations; here
on the 0..255 scale ``epsilon=8``, ``alpha=2``, ``max_iters=10``.

- :class:`TOGVanishing` (``tog_vanishing``): the detector's
  ``object_vanishing_loss``, descended. It covers **every candidate** of the
  detector (every RPN anchor and the RoI head on the current proposals of a
  two-stage detector, every prior of a dense head, every query of a DETR),
  towards background, with **no ground truth**;
- :class:`TOGFabrication` (``tog_fabrication``): the detector's
  ``object_fabrication_loss``, descended: every candidate towards an object.

The loss comes from the target set
(:meth:`~mmdag.attacks.TargetSet.candidate_loss`; for mmdet models
:mod:`mmdag.targets.candidates`, which says which mmdet family follows which
of TOG's three model files, ``frcnn.py``, ``yolov3.py`` and ``ssd.py``, and
what is chosen for the kinds TOG has no model of: sigmoid heads, queries).
Every image is attacked, whether or not it has a target correct on the
clean image (``needs_correct_targets = False``). The statistics are DAG's,
on the adapter's targets (proposals, priors or queries matched to a
ground-truth object): a target flips when it is no longer detected as its
object's class; they measure the attack, they do not steer it.

TOG's untargeted and mislabel attacks take the detector's training loss
against its clean detections: :mod:`mmdag.attacks.tog_detections`
(re-exported here).

mmdag's former ``TOGVanishing``, ``TOGMislabel`` and ``TOGUntargeted`` (a
class cross-entropy on the targets matched to the ground truth) are
:class:`~mmdag.attacks.matched.MatchedVanishing`,
:class:`~mmdag.attacks.matched.MatchedMislabel` and
:class:`~mmdag.attacks.matched.MatchedUntargeted`.
"""
from typing import List, Tuple

import torch
from torch import Tensor

from mmdag.registry import ATTACKS
from .budgeted import SignGradientAttack
from .matched import vanishing_loss
from .targets import CANDIDATE_MODES
from .tog_detections import TOGMislabel, TOGUntargeted

__all__ = ['TOGVanishing', 'TOGFabrication', 'TOGMislabel', 'TOGUntargeted',
           'vanishing_loss']


class _TOGCandidates(SignGradientAttack):
    """TOG's step, start and defaults on a loss over every candidate of the
    detector (module docstring); ``mode`` names the loss.

    Args:
        epsilon (float): L-inf budget on the 0..255 scale. Defaults to 8
            (TOG's 8/255).
        alpha (float): step on the 0..255 scale. Defaults to 2 (TOG's 2/255).
        max_iters (int): steps. Defaults to 10 (TOG's).
        random_start (bool): TOG's uniform start in the ball. Defaults to True.
        quantize, clip_range, seed: as
            :class:`~mmdag.attacks.budgeted.SignGradientAttack`.
    """

    loss_on_logits = False
    #: the loss needs no target correct on the clean image: every image is attacked
    needs_correct_targets = False
    mode = 'vanishing'

    def __init__(self, epsilon: float = 8.0, alpha: float = 2.0, max_iters: int = 10,
                 random_start: bool = True, quantize: bool = False,
                 clip_range: Tuple[float, float] = (0.0, 255.0), seed: int = 0) -> None:
        assert self.mode in CANDIDATE_MODES
        super().__init__(epsilon=epsilon, alpha=alpha, max_iters=max_iters,
                         random_start=random_start, quantize=quantize, clip_range=clip_range,
                         seed=seed)

    def init_image(self, seed, labels, targets, clean_logits, correct):
        return correct, None

    def images_loss(self, m: int, images: List[Tensor], indices: List[int], targets,
                    states: list) -> Tensor:
        """Minus the sum of the images' TOG losses: the step ascends it, so
        each image descends its own loss (an image's loss depends on that
        image only)."""
        losses = targets.candidate_loss(images, indices, self.mode)
        return -torch.stack([loss.reshape(()) for loss in losses]).sum()


@ATTACKS.register_module()
class TOGVanishing(_TOGCandidates):
    """TOG vanishing (module docstring): every candidate of the detector
    towards background, the authors' ``object_vanishing_loss`` descended.
    Arguments: :class:`_TOGCandidates`'s."""

    mode = 'vanishing'


@ATTACKS.register_module()
class TOGFabrication(_TOGCandidates):
    """TOG fabrication (module docstring): every candidate of the detector
    towards an object, the authors' ``object_fabrication_loss`` descended.
    Arguments: :class:`_TOGCandidates`'s."""

    mode = 'fabrication'
