"""TOG's untargeted and mislabel attacks as the authors compute them (Chow et
al., "Adversarial Objectness Gradient Attacks in Real-time Object Detection
Systems", TPS 2020; ``git-disl/TOG``: ``tog/attacks.py``, ``models/*.py``,
``attack_utils/target_utils.py``).

Plain PyTorch (and mmdag's registry); no mmdet or mmseg import.
Both take the detector's WHOLE training
loss (box, objectness or RPN, class terms) against the model's own
detections of the clean image above a confidence threshold, which serve as
the ground truth: the target set's
:meth:`~mmdag.attacks.TargetSet.detector_loss` with ``gt='clean'`` (for
mmdet models :mod:`mmdag.targets.det_loss`: ``model.loss`` in loss mode, one
image at a time, its random draws seeded per image and step, as DetPGD).

- :class:`TOGUntargeted` (``tog_untargeted``): the loss ascended;
- :class:`TOGMislabel` (``tog_mislabeling``): the loss towards the clean
  detections relabelled, descended. ``adv_labels='ml'`` gives each
  detection the most likely class among those whose softmax of the
  detection's class scores is not above the threshold, ``'ll'`` its least
  likely class (``target_utils.generate_attack_targets``); mmdag's
  ``'random'``, ``'permute'`` and ``'target'`` (:mod:`mmdag.attacks.labels`)
  relabel by class only.

The step is TOG's: from a uniform start in the ``epsilon`` ball (clipped to
the valid range), ``x <- clip(x0 + clip_eps(x + alpha * sign(grad) - x0))``
for ``max_iters`` steps, the last iterate returned. TOG's defaults on the
0..1 scale (``eps=8/255``, ``eps_iter=2/255``, ``n_iter=10``) are
``epsilon=8``, ``alpha=2``, ``max_iters=10`` on the 0..255 scale here. The
threshold ``score_thr`` defaults to TOG's for the detector's kind (the target
set's ``tog_score_thr``: 0.70 for two-stage detectors as ``frcnn.py``, 0.50
for softmax heads as ``ssd.py``, 0.20 for sigmoid heads as ``yolov3.py``).

TOG has no model of a sigmoid dense head without objectness (RetinaNet,
FCOS...) or of a DETR-like head: their detections are taken as their
``predict`` gives them (for queries: the top-scoring query-class pairs, no
NMS), at the threshold of the activation (0.20 for sigmoid scores as
YOLOv3's, 0.50 for DETR's softmax as SSD's), and the loss's own assigner
(Hungarian matching for queries) pairs candidates with them. TOG's ``ml``
and ``ll`` need each detection's class scores, which the target set
recovers where the detector's NMS keeps track of the candidate (two-stage
detectors); elsewhere they are refused in one line.

An image without a clean detection above the threshold is attacked with the
loss against an empty ground truth (TOG's YOLOv3 and SSD; its Faster R-CNN
takes its fabrication loss there). The statistics are DAG's, on the target
set's targets, as DetPGD's.
"""
from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from mmdag.errors import MMDagError, SettingError
from mmdag.registry import ATTACKS
from .base import derive_seeds
from .budgeted import SignGradientAttack
from .labels import draw_adv_labels

__all__ = ['TOGUntargeted', 'TOGMislabel', 'tog_ml_labels', 'tog_ll_labels', 'MISLABEL_MODES']

#: TOG's modes (``ml``, ``ll``) and mmdag's strategies that need no score
MISLABEL_MODES = ('ml', 'll', 'random', 'permute', 'target')


def tog_ml_labels(class_scores: Tensor, score_thr: float) -> Tensor:
    """TOG's ``ml`` class of each detection: the classes whose softmax of the
    detection's class scores ``[n, C]`` is above ``score_thr`` are left out,
    then the most likely class is taken (the first on a tie, as numpy's
    ``argmax``; the detection's own class when none is above the threshold,
    as in TOG's code)."""
    scores = class_scores.detach().double().clone()
    scores[scores.softmax(-1) > score_thr] = float('-inf')
    return scores.argmax(-1)


def tog_ll_labels(class_scores: Tensor) -> Tensor:
    """TOG's ``ll`` class of each detection: the least likely class of its
    class scores ``[n, C]``."""
    return class_scores.detach().argmin(-1)


class _TOGOnDetections(SignGradientAttack):
    """TOG's step on the detector's loss against the clean detections
    (module docstring); a subclass sets :attr:`direction` and may relabel."""

    loss_on_logits = False
    #: the loss needs no target correct on the clean image
    needs_correct_targets = False
    #: +1: the loss ascended (untargeted), -1: descended (mislabel)
    direction = 1.0

    def __init__(self, epsilon: float = 8.0, alpha: float = 2.0, max_iters: int = 10,
                 score_thr: Optional[float] = None, random_start: bool = True,
                 quantize: bool = False, clip_range: Tuple[float, float] = (0.0, 255.0),
                 seed: int = 0) -> None:
        if score_thr is not None and not 0 <= score_thr < 1:
            raise ValueError(f'score_thr must be in [0, 1) or None, got {score_thr}')
        super().__init__(epsilon=epsilon, alpha=alpha, max_iters=max_iters,
                         random_start=random_start, quantize=quantize, clip_range=clip_range,
                         seed=seed)
        self.score_thr = score_thr
        self._run: dict = {}

    def relabel(self, seed: int, detections: dict, targets, score_thr: float) -> Optional[Tensor]:
        """The classes the loss takes for an image's clean detections (None:
        their own)."""
        return None

    def __call__(self, images: Sequence[Tensor], targets, seeds: Optional[Sequence[int]] = None,
                 regions=None, clean_logits=None):
        """Attack a batch (arguments as :meth:`IterativeAttack.__call__`): the
        clean detections are predicted first, on the clean images."""
        if not hasattr(targets, 'clean_detections'):
            raise MMDagError(f'{type(targets).__name__} has no clean detections: '
                             f'{type(self).__name__} attacks detectors (for segmentation use '
                             'pgd, segpgd, cospgd or apgd)')
        thr = self.score_thr if self.score_thr is not None else targets.tog_score_thr()
        num = len(images)
        dets = targets.clean_detections([x.detach().float() for x in images], range(num), thr)
        image_seeds = derive_seeds(self.seed, seeds, num)
        self._run = dict(score_thr=thr, labels=[self.relabel(s, d, targets, thr)
                                                for s, d in zip(image_seeds, dets)])
        try:
            return super().__call__(images, targets, seeds=seeds, regions=regions,
                                    clean_logits=clean_logits)
        finally:
            self._run = {}

    def init_image(self, seed, labels, targets, clean_logits, correct):
        """The image's seed is its state: the loss's draws at step ``m`` are
        seeded from it."""
        return correct, int(seed)

    def images_loss(self, m: int, images: List[Tensor], indices: List[int], targets,
                    states: list) -> Tensor:
        """The sum over the images of ``direction`` times the detector's loss
        against their clean detections (each image's gradient is its own)."""
        seeds = [s * 1_000_003 + m for s in states]
        labels = [self._run['labels'][i] for i in indices]
        losses = targets.detector_loss(images, indices, seeds, 'all', gt='clean',
                                       score_thr=self._run['score_thr'], labels=labels)
        return self.direction * torch.stack([loss.reshape(()) for loss in losses]).sum()


@ATTACKS.register_module()
class TOGUntargeted(_TOGOnDetections):
    """TOG untargeted (module docstring): the detector's loss against its
    clean detections, ascended.

    Args:
        epsilon (float): L-inf budget on the 0..255 scale. Defaults to 8.
        alpha (float): step on the 0..255 scale. Defaults to 2 (TOG's 2/255).
        max_iters (int): steps. Defaults to 10 (TOG's).
        score_thr (float, optional): the clean detections' confidence
            threshold. Defaults to TOG's for the detector's kind (module
            docstring).
        random_start, quantize, clip_range, seed: as
            :class:`~mmdag.attacks.budgeted.SignGradientAttack`.
    """


@ATTACKS.register_module()
class TOGMislabel(_TOGOnDetections):
    """TOG mislabel (module docstring): the detector's loss against its clean
    detections relabelled, descended.

    Args:
        adv_labels (str): one of :data:`MISLABEL_MODES`: TOG's ``'ml'`` (most
            likely class not above the threshold) or ``'ll'`` (least likely
            class), which need the detections' class scores, or mmdag's
            ``'random'`` (a random other class per detection, drawn from the
            image's seed), ``'permute'`` or ``'target'``. Defaults to
            ``'ml'``.
        target_class (int): the class of ``adv_labels='target'``.
        exclude_classes (Sequence[int]): never a relabelled class, for
            ``'random'`` and ``'permute'``.
        epsilon, alpha, max_iters, score_thr, random_start, quantize,
            clip_range, seed: as :class:`TOGUntargeted`.
    """

    direction = -1.0

    def __init__(self, epsilon: float = 8.0, alpha: float = 2.0, max_iters: int = 10,
                 adv_labels: str = 'ml', target_class: int = 0,
                 exclude_classes: Sequence[int] = (), score_thr: Optional[float] = None,
                 random_start: bool = True, quantize: bool = False,
                 clip_range: Tuple[float, float] = (0.0, 255.0), seed: int = 0) -> None:
        if adv_labels not in MISLABEL_MODES:
            raise ValueError(f'unknown adv_labels {adv_labels!r}; choose one of {MISLABEL_MODES}')
        super().__init__(epsilon=epsilon, alpha=alpha, max_iters=max_iters, score_thr=score_thr,
                         random_start=random_start, quantize=quantize, clip_range=clip_range,
                         seed=seed)
        self.adv_labels = adv_labels
        self.target_class = int(target_class)
        self.exclude_classes = tuple(int(c) for c in exclude_classes)

    def relabel(self, seed: int, detections: dict, targets, score_thr: float) -> Tensor:
        """The relabelled class of each clean detection of an image: TOG's
        ``ml`` / ``ll`` from the detections' class scores, or mmdag's
        strategy drawn from the image's seed (a detection without an
        admissible class keeps its own)."""
        own = detections['labels']
        if not len(own):   # nothing to relabel
            return own
        if self.adv_labels in ('ml', 'll'):
            scores = detections.get('class_scores')
            if scores is None:
                raise MMDagError(
                    f"TOG mislabel '{self.adv_labels}' needs the class scores of each clean "
                    f'detection, which mmdag recovers for two-stage detectors only: '
                    "use adv_labels='random', 'permute' or 'target'")
            if self.adv_labels == 'ml':
                return tog_ml_labels(scores, score_thr).to(own.device)
            return tog_ll_labels(scores).to(own.device)
        adv = draw_adv_labels(self, seed, own, targets, None).to(own.device)
        num_objects = targets.num_classes - (targets.background is not None)
        if bool((adv >= num_objects).any()):
            raise SettingError(f'target_class {self.target_class} is not an object class: the '
                               f'detector has {num_objects} (0 to {num_objects - 1})')
        return torch.where(adv >= 0, adv, own)
