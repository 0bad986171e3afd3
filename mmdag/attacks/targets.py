"""The interface between an attack and a model: a set of dense targets.

An attack in :mod:`mmdag.attacks` never sees a model. It sees a
:class:`TargetSet`: an object that, given float images in pixel space, returns
for every image the classification logits of that image's targets (pixels for
segmentation, proposals or priors for detection). Adapters in
:mod:`mmdag.targets` build such objects from OpenMMLab models.
"""
from typing import List, Sequence

import torch
from torch import Tensor

from mmdag.errors import MMDagError

#: the losses over every candidate of a detector (:meth:`TargetSet.candidate_loss`)
CANDIDATE_MODES = ('vanishing', 'fabrication')


class TargetSet:
    """Dense recognition targets of a batch of images.

    Subclasses set ``labels`` (one ``LongTensor [N_i]`` of true labels per
    image, values in ``[0, num_classes)``) and implement :meth:`logits`.

    Args:
        labels (list[Tensor]): true label of each target, one tensor per image.
        num_classes (int): number of classes ``C`` of the logits.
    """

    #: what the logits are, for the attacks whose loss needs it (the
    #: budgeted attacks' cross-entropy): ``'softmax'`` logits, the
    #: ``'log_scores'`` of a mask-classification head (log of non-negative
    #: class scores) or per-class ``'sigmoid'`` logits without a background
    activation: str = 'softmax'

    #: a detector's background (or no-object) class, where its head has one
    #: (softmax heads); None otherwise (segmentation, sigmoid heads)
    background = None

    #: classes the model's own structure forbids as adversarial labels (e.g. a
    #: detector's background logit); an attack adds them to its own exclusions.
    exclude_adv: Sequence[int] = ()

    def __init__(self, labels: List[Tensor], num_classes: int) -> None:
        self.labels = labels
        self.num_classes = num_classes

    def __len__(self) -> int:
        return len(self.labels)

    def logits(self, images: Sequence[Tensor], indices: Sequence[int]) -> List[Tensor]:
        """Logits of the targets of the images ``indices`` of the batch.

        Args:
            images (Sequence[Tensor]): float images ``[3, H, W]`` on the
                0..255 scale, one per entry of ``indices``; gradients must flow
                from the returned logits back to them.
            indices (Sequence[int]): positions of these images in the batch
                (an attack only forwards the images it still updates).

        Returns:
            list[Tensor]: ``[N_i, C]`` logits, one per entry of ``indices``.
        """
        raise NotImplementedError

    def detector_loss(self, images: Sequence[Tensor], indices: Sequence[int],
                      seeds: Sequence[int], terms: str = 'all') -> List[Tensor]:
        """A detector's own training loss on each image (DetPGD's objective),
        differentiable with respect to it; ``seeds`` seed the loss's random
        draws (samplers), one per image; ``terms``: ``'all'`` or ``'cls'``.
        Detection adapters implement it (:mod:`mmdag.targets.det_loss`)."""
        raise MMDagError(f'{type(self).__name__} has no detector loss: detpgd attacks detectors '
                         '(for segmentation use pgd, segpgd, cospgd or apgd)')

    def candidate_loss(self, images: Sequence[Tensor], indices: Sequence[int],
                       mode: str = 'vanishing') -> List[Tensor]:
        """TOG's loss over every candidate of a detector (every anchor, prior,
        proposal or query, with no ground truth) on each image, the scalar
        TOG descends, differentiable with respect to the image.

        Args:
            images (Sequence[Tensor]): float images ``[3, H, W]`` (0..255),
                one per entry of ``indices``.
            indices (Sequence[int]): their positions in the batch.
            mode (str): ``'vanishing'`` (every candidate towards background)
                or ``'fabrication'`` (towards an object), one of
                :data:`CANDIDATE_MODES`.

        Returns:
            list[Tensor]: one scalar per entry of ``indices``.

        Detection adapters implement it (:mod:`mmdag.targets.candidates`).
        """
        raise MMDagError(f'TOG {mode} needs a detector: {type(self).__name__} has no '
                         'candidates (anchors, proposals or queries) to push towards the '
                         'background or an object (for segmentation use pgd, segpgd, cospgd '
                         'or apgd)')

    def correct(self, logits: Tensor, labels: Tensor) -> Tensor:
        """Which targets are still classified as their true label.

        The default is the paper's rule, ``argmax_c f_c == l``. Heads without
        a background logit (sigmoid detectors) override this.
        """
        if logits.numel() == 0:
            return torch.zeros(labels.shape, dtype=torch.bool, device=labels.device)
        return logits.argmax(dim=1) == labels
