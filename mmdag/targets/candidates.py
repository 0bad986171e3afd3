"""TOG's losses over every candidate of an MMDetection detector, without
ground truth (what :class:`~mmdag.attacks.TOGVanishing` and
:class:`~mmdag.attacks.TOGFabrication` descend).

The authors' code (github git-disl/TOG) has one model file per detector
kind; each mmdet family is mapped to the closest:

* ``models/frcnn.py`` (``object_vanishing_loss`` / ``object_fabrication_loss``)
  -> **two-stage detectors** (Faster / Mask / Cascade R-CNN and every
  ``TwoStageDetector`` with an RPN): the mean cross-entropy of every RPN
  anchor's objectness towards background (fabrication: towards object), plus
  the mean cross-entropy of the RoI head's class scores on the proposals of
  the *current* (attacked) image towards background (fabrication: minus the
  cross-entropy towards each proposal's own argmax class). The proposals are
  what the RPN proposes under the model's own test settings, taken as
  constants (as TOG's ``ProposalTargetCreator`` does); TOG draws 128 of them
  at random per step (its sampler, with a dummy ground-truth box), here all
  of them are used, so the step is deterministic. mmdet's sigmoid RPN scores
  one objectness logit ``z``: its two-class scores are ``[0, z]``
  (background, object), so the cross-entropy towards background is
  ``softplus(z)``. Cascade RoI heads score with the mean of their stages'
  logits, as :mod:`mmdag.targets.two_stage` reads them.
* ``models/yolov3.py`` -> **heads with an objectness** (YOLOv3, YOLOX): the
  binary cross-entropy of every prior's objectness logit towards 0
  (fabrication: towards 1), summed over the priors; the class scores are not
  in the loss, as in TOG.
* ``models/ssd.py`` -> **softmax dense heads** (SSD and any anchor head
  with a background logit): the mean cross-entropy of every prior's class
  scores towards the background class (fabrication: its negative).

Where TOG has no model of the kind:

* **sigmoid dense heads without objectness** (RetinaNet, FCOS, ATSS, GFL,
  TOOD, RTMDet, CenterNet, SOLO...): every class score of every prior is an
  objectness of its own, so YOLOv3's rule is applied to each: the binary
  cross-entropy of every class logit towards 0 (fabrication: towards 1),
  summed. The logits are those the one-stage adapter reads
  (:func:`mmdag.targets.head_specs.cls_maps`: TOOD's geometric mean, SOLO's
  local maxima...).
* **queries** (DETR family, MaskFormer): every query of the last decoder
  layer is a candidate. A softmax head with a no-object class (DETR,
  MaskFormer) takes SSD's rule towards no-object; a sigmoid head (Deformable
  DETR, DINO, DDQ...) takes the sigmoid rule above. Two-stage DETRs choose
  their queries on the current image (as TOG's RoI term takes the current
  proposals), not the selection recorded on the clean one.

Every loss is per image, on the image's own canvas (:mod:`mmdag.targets.batching`),
and returned as the scalar TOG *descends*.
"""
from typing import Callable, List, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from mmdag.attacks.targets import CANDIDATE_MODES
from mmdag.errors import MMDagError
from .head_specs import flat_logits

__all__ = ['check_mode', 'background_rule', 'sigmoid_rule', 'two_stage_loss',
           'yolov3_objectness', 'yolox_objectness', 'dense_class_loss', 'objectness_kind',
           'query_loss']


def check_mode(mode: str) -> None:
    """Refuse a mode other than :data:`~mmdag.attacks.targets.CANDIDATE_MODES`."""
    if mode not in CANDIDATE_MODES:
        raise ValueError(f'mode must be one of {CANDIDATE_MODES}, got {mode!r}')


def background_rule(logits: Tensor, background: int, mode: str) -> Tensor:
    """TOG's SSD rule on softmax scores ``[N, K]``: the mean cross-entropy
    towards ``background`` (vanishing), or its negative (fabrication)."""
    if len(logits) == 0:
        return logits.sum()
    ce = F.cross_entropy(logits, logits.new_full(logits.shape[:1], background, dtype=torch.long))
    return ce if mode == 'vanishing' else -ce


def sigmoid_rule(logits: Tensor, mode: str) -> Tensor:
    """TOG's YOLOv3 rule on sigmoid logits (any shape): the binary
    cross-entropy of each towards 0 (vanishing) or 1 (fabrication), summed."""
    sign = 1.0 if mode == 'vanishing' else -1.0
    return F.softplus(sign * logits).sum()   # BCE(z, 0) = softplus(z); BCE(z, 1) = softplus(-z)


# ----------------------------------------------------------- two-stage (frcnn.py)
def _rpn_objectness(rpn_head, maps: List[Tensor], j: int, mode: str) -> Tensor:
    """Image ``j``'s RPN term: the mean cross-entropy of every anchor towards
    background (vanishing) or object (fabrication)."""
    if rpn_head.use_sigmoid_cls:
        z = flat_logits(maps, j, 1)[:, 0]
        # two-class scores [0, z] (background, object): CE towards background
        # is softplus(z), towards object softplus(-z)
        return F.softplus(z if mode == 'vanishing' else -z).mean()
    z = flat_logits(maps, j, 2)        # mmdet's softmax RPN: [object, background]
    target = 1 if mode == 'vanishing' else 0
    return F.cross_entropy(z, z.new_full(z.shape[:1], target, dtype=torch.long))


def two_stage_loss(model, x, metas: list, mode: str, roi_logits: Callable) -> List[Tensor]:
    """TOG's Faster R-CNN loss (module docstring) of each image of a canvas
    group, from its features ``x``.

    Args:
        model: a ``TwoStageDetector`` with a plain RPN head.
        x (tuple[Tensor]): the group's backbone (+ neck) features.
        metas (list[dict]): the images' metainfo.
        mode (str): 'vanishing' or 'fabrication'.
        roi_logits (Callable): ``(model, x, boxes, metas) -> [n_i, C + 1]``
            logits of the RoI head on fixed boxes, background last.

    Returns:
        list[Tensor]: one scalar per image.
    """
    rpn = model.rpn_head
    if type(rpn).__name__ == 'CascadeRPNHead':
        raise MMDagError('TOG on a Cascade RPN is not supported (its stages have no plain '
                         'forward of every anchor): attack this detector with detpgd or '
                         'matchedvanishing')
    cls_maps, box_maps = rpn(x)
    with torch.no_grad():   # the current image's proposals, taken as constants
        proposals = rpn.predict_by_feat([c.detach() for c in cls_maps],
                                        [b.detach() for b in box_maps],
                                        batch_img_metas=metas, rescale=False)
    boxes = [p.bboxes.detach() for p in proposals]
    scores = roi_logits(model, x, boxes, metas)
    out = []
    for j, z in enumerate(scores):
        term = _rpn_objectness(rpn, list(cls_maps), j, mode)
        if len(z):
            bg = z.shape[1] - 1
            if mode == 'vanishing':
                roi = F.cross_entropy(z, z.new_full(z.shape[:1], bg, dtype=torch.long))
            else:
                roi = -F.cross_entropy(z, z.detach().argmax(1))
            term = term + roi
        out.append(term)
    return out


# ------------------------------------------------------ objectness (yolov3.py)
def objectness_kind(head) -> str:
    """'yolov3' or 'yolox' for a head with an objectness, '' otherwise."""
    names = {c.__name__ for c in type(head).__mro__}
    if 'YOLOV3Head' in names:
        return 'yolov3'
    if 'YOLOXHead' in names:
        return 'yolox'
    return ''


def yolov3_objectness(head, x, mode: str) -> List[Tensor]:
    """TOG's YOLOv3 loss of each image: the objectness logit (attribute 4 of
    each base prior's ``5 + C``) of every cell and anchor, towards 0
    (vanishing) or 1 (fabrication), summed."""
    maps = head(x)[0]      # [B, A * (5 + C), H, W] per level
    obj = [m.reshape(m.shape[0], -1, head.num_attrib, *m.shape[-2:])[:, :, 4] for m in maps]
    return [sum(sigmoid_rule(o[j], mode) for o in obj) for j in range(obj[0].shape[0])]


def yolox_objectness(head, x, mode: str) -> List[Tensor]:
    """YOLOv3's rule on YOLOX's objectness maps ``[B, 1, H, W]``."""
    obj = head(x)[2]
    return [sum(sigmoid_rule(o[j], mode) for o in obj) for j in range(obj[0].shape[0])]


# ------------------------------------------------- class scores (ssd.py, sigmoid)
def dense_class_loss(maps: Sequence[Tensor], num_logits: int, sigmoid: bool, mode: str,
                     background: int = -1) -> List[Tensor]:
    """Every prior's class scores, per image: SSD's rule towards
    ``background`` on softmax heads, YOLOv3's rule on every class logit of a
    sigmoid head (module docstring).

    Args:
        maps (Sequence[Tensor]): class logit maps ``[B, A * K, H, W]`` per level.
        num_logits (int): ``K``, the logits per prior.
        sigmoid (bool): per-class sigmoid scores (else a softmax).
        mode (str): 'vanishing' or 'fabrication'.
        background (int): the softmax head's background index.
    """
    out = []
    for j in range(maps[0].shape[0]):
        z = flat_logits(list(maps), j, num_logits)
        out.append(sigmoid_rule(z, mode) if sigmoid else background_rule(z, background, mode))
    return out


def query_loss(cls: Tensor, sigmoid: bool, mode: str) -> List[Tensor]:
    """Every query's class logits ``[B, Q, K]``, per image: the sigmoid rule,
    or SSD's rule towards no-object (the last logit)."""
    return [sigmoid_rule(z, mode) if sigmoid else background_rule(z, z.shape[-1] - 1, mode)
            for z in cls]
