"""Priors (anchors, points) of an MMDetection one-stage detector as DAG targets."""
from typing import List, Optional, Sequence

import torch
from torch import Tensor

from mmdag.attacks import TargetSet
from mmdag.errors import UnsupportedModelError
from mmdag.registry import TARGETS
from .batching import map_canvas_groups
from .candidates import (check_mode, dense_class_loss, objectness_kind, yolov3_objectness,
                         yolox_objectness)
from .common import above_threshold  # noqa: F401
from .common import features as _features
from .common import gt_in_input_frame, score_logit
from .dense_heads import AssignContext, cls_maps, find_spec, flat_logits, supported_heads
from .det_loss import DetectorLoss


def dense_head_of(model):
    """The dense head that classifies priors: ``bbox_head`` (detectors, CondInst,
    YOLACT) or ``mask_head`` (SOLO, whose category branch classifies grid cells)."""
    head = getattr(model, 'bbox_head', None)
    if head is None and type(model).__name__ in ('SOLO', 'SOLOv2'):
        head = getattr(model, 'mask_head', None)
    return head


@TARGETS.register_module()
class OneStageTargets(DetectorLoss, TargetSet):
    """Priors that the dense head's own assigner matches to ground truth.

    On the clean image the head's own target code (the one its
    ``loss_by_feat`` calls, read per head in :mod:`mmdag.targets.dense_heads`)
    assigns priors (anchors, points, grid cells, heatmap positions) to
    ground-truth boxes: RetinaNet/SSD/YOLACT the MaxIoU assigner of
    ``train_cfg``; ATSS/GFL the ATSS assigner; TOOD, RTMDet, YOLOF, YOLOX and
    DDOD their prediction-aware assigners on the clean predictions; FCOS,
    CondInst and VFNet their point rules; CenterNet and CornerNet the heatmap
    peaks at box centres / corners; SOLO the grid cells of the instance's
    centre region; YOLOv3 the responsible cell and anchor. Every matched
    prior is a target labelled with its box's class (what each head's
    targets are: ``settings['attacked']`` and the README). Each iteration
    runs backbone, neck and head on the whole
    image (a one-stage detector has no cheaper part to skip) and reads the
    class logits of the targets. Priors are indexed in the image's own
    canvas, and every forward is made per canvas group
    (:mod:`mmdag.targets.batching`), so the indices stay valid whichever
    images are still being attacked.

    "Still correct":
        * softmax heads with a background logit (SSD): ``argmax == label``,
          the paper's rule; background is never an adversarial label.
        * sigmoid heads (RetinaNet, FCOS, ATSS, YOLOv3 and most others) have no background
          logit and every class is scored on its own: a target is still
          correct while its true class's score is above the head's test
          ``score_thr`` (the score under which mmdet drops the detection
          before NMS). DAG pushes that logit down and the adversarial class's
          up; it stops when every true-class score is under the threshold.
          For YOLOv3 the objectness is not attacked: the rule reads the class
          score only (conservative: a prior whose objectness fell under
          ``conf_thr`` still counts as correct).

    Args:
        model: a ``SingleStageDetector`` or ``SingleStageInstanceSegmentor``
            (unwrapped, eval mode) with one of the supported dense heads and
            its ``train_cfg`` (the assigner).
        inputs (list[Tensor]): clean images ``[3, H, W]`` (0..255).
        data_samples (list[DetDataSample]): samples with ``gt_instances``.
        score_thr (float, optional): the sigmoid rule's threshold; None = the
            head's ``test_cfg.score_thr``. Defaults to None.
        gt_frame (str): 'original' (boxes of the zoo test pipelines, scaled by
            ``scale_factor``) or 'input'. Defaults to 'original'.
    """

    family = ('MMDetection one-stage detectors and instance segmentors with a dense head '
              '(' + ', '.join(supported_heads()) + ')')

    @staticmethod
    def accepts(model) -> bool:
        from mmdet.models.detectors import SingleStageDetector
        from mmdet.models.detectors.single_stage_instance_seg import SingleStageInstanceSegmentor

        # the RPN detector scores one class-agnostic objectness: no wrong label to push up
        return (isinstance(model, (SingleStageDetector, SingleStageInstanceSegmentor))
                and dense_head_of(model) is not None
                and getattr(dense_head_of(model), 'num_classes', 2) >= 2)

    @staticmethod
    def refusal(model) -> Optional[str]:
        """Why a one-stage model of a supported kind is refused, or None."""
        from mmdet.models.detectors import SingleStageDetector
        head = dense_head_of(model) if isinstance(model, SingleStageDetector) else None
        n = getattr(head, 'num_classes', None)
        if isinstance(n, int) and n < 2:
            return (f'{type(model).__name__} with {type(head).__name__} scores {n} class: DAG '
                    'needs an adversarial label other than the true one, and a class-agnostic '
                    '(RPN) or one-class (face, pedestrian) detector has none')
        return None

    def __init__(self, model, inputs: Sequence[Tensor], data_samples: list,
                 score_thr: Optional[float] = None, gt_frame: str = 'original') -> None:
        head = dense_head_of(model)
        spec = find_spec(head)
        if spec is None:
            raise UnsupportedModelError(
                f'mmdag has no DAG target adapter for the dense head {type(head).__name__}. '
                f'Supported families: {self.family}.')
        if gt_frame not in ('original', 'input'):
            raise ValueError(f"gt_frame must be 'original' or 'input', got {gt_frame!r}")
        self.model, self.head, self.spec = model, head, spec
        self.samples = list(data_samples)
        self.gt_frame = gt_frame
        self.sigmoid = spec.sigmoid if spec.sigmoid is not None else bool(
            getattr(head, 'use_sigmoid_cls', False))
        self.activation = 'sigmoid' if self.sigmoid else 'softmax'
        if score_thr is None:
            score_thr = float((head.test_cfg or {}).get('score_thr', 0.05))
        self.settings = dict(head=type(head).__name__, sigmoid=self.sigmoid,
                             score_thr=score_thr if self.sigmoid else None, attacked=spec.attacked)
        self.threshold = score_logit(score_thr)
        num_classes = head.num_classes
        self.num_logits = num_classes if self.sigmoid else num_classes + 1
        images = [im.float() for im in inputs]

        def assign(group):
            # the priors of an image's own canvas: feature-map sizes and flat
            # prior indices are those of every later forward of this image
            x, metas = _features(model, [images[k] for k in group],
                                 [self.samples[k] for k in group])
            outs = head(x)
            maps = cls_maps(spec, head, x) if spec.cls_maps else list(outs[0])
            featmap_sizes = [m.shape[-2:] for m in maps]
            num_priors = sum(m.shape[-2] * m.shape[-1] * (m.shape[1] // self.num_logits)
                             for m in maps)
            device = maps[0].device
            out = []
            for j, (k, meta) in enumerate(zip(group, metas)):
                gt = gt_in_input_frame(self.samples[k], gt_frame, device, meta=meta,
                                       masks=_needs_masks(head))
                if gt is None or len(gt) == 0:
                    out.append(torch.zeros(0, dtype=torch.long, device=device))
                    continue
                ctx = AssignContext(featmap_sizes=featmap_sizes, meta=meta, gt=gt,
                                    outs=_image_outs(outs, j), device=device)
                try:
                    labels = spec.assign(head, ctx)
                except (AttributeError, KeyError, TypeError) as e:
                    if not getattr(head, 'train_cfg', None):
                        raise UnsupportedModelError(
                            f'{type(head).__name__} has no train_cfg: keep model.train_cfg in the '
                            "config, DAG uses the head's own assigner to choose its targets") from e
                    raise
                if labels.shape != (num_priors, ):
                    raise RuntimeError(f'{type(head).__name__}: {labels.shape[0]} assigned labels '
                                       f'for {num_priors} priors')
                out.append(labels)
            return out

        with torch.no_grad():
            assigned = map_canvas_groups(model, images, assign)
        self.index, labels = [], []
        for lab in assigned:
            keep = torch.nonzero(lab >= 0)[:, 0]
            self.index.append(keep)
            labels.append(lab[keep])
        super().__init__(labels, self.num_logits)
        if not self.sigmoid:
            self.exclude_adv = (num_classes, )   # background is never an adversarial label
            self.background = num_classes

    def logits(self, images: Sequence[Tensor], indices: Sequence[int]) -> List[Tensor]:
        def forward(group):
            ids = [indices[k] for k in group]
            x, _ = _features(self.model, [images[k] for k in group],
                             [self.samples[i] for i in ids])
            maps = cls_maps(self.spec, self.head, x)
            return [flat_logits(maps, j, self.num_logits)[self.index[i]] for j, i in enumerate(ids)]

        return map_canvas_groups(self.model, images, forward)

    def candidate_loss(self, images: Sequence[Tensor], indices: Sequence[int],
                       mode: str = 'vanishing') -> List[Tensor]:
        """TOG's loss over every prior of each image (:mod:`mmdag.targets.candidates`):
        the objectness of YOLOv3 and YOLOX, else every class score (the
        background cross-entropy of a softmax head, each class logit's of a
        sigmoid head)."""
        check_mode(mode)
        kind = objectness_kind(self.head)

        def forward(group):
            ids = [indices[k] for k in group]
            x, _ = _features(self.model, [images[k] for k in group],
                             [self.samples[i] for i in ids])
            if kind == 'yolov3':
                return yolov3_objectness(self.head, x, mode)
            if kind == 'yolox':
                return yolox_objectness(self.head, x, mode)
            maps = cls_maps(self.spec, self.head, x)
            return dense_class_loss(maps, self.num_logits, self.sigmoid, mode,
                                    -1 if self.sigmoid else self.background)

        return map_canvas_groups(self.model, images, forward)

    def correct(self, logits: Tensor, labels: Tensor) -> Tensor:
        if not self.sigmoid:
            return super().correct(logits, labels)
        return above_threshold(logits, labels, self.threshold)


def _needs_masks(head) -> bool:
    return type(head).__name__ in ('SOLOHead', 'DecoupledSOLOHead', 'DecoupledSOLOLightHead',
                                   'SOLOV2Head')


def _image_outs(outs, j: int):
    """Image ``j``'s part of a head's outputs (lists of level maps ``[B, ...]``,
    or tensors ``[B, ...]``), as a batch of one."""
    def pick(o):
        if torch.is_tensor(o):
            return o[j:j + 1]
        if isinstance(o, (list, tuple)):
            return type(o)(pick(v) for v in o)
        return o
    return pick(outs)
