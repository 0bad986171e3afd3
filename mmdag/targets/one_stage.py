"""Priors (anchors, points) of an MMDetection one-stage detector as DAG targets."""
import math
from typing import List, Optional, Sequence

import torch
from torch import Tensor

from mmdag.attacks import TargetSet
from mmdag.errors import UnsupportedModelError
from mmdag.registry import TARGETS
from mmdag.targets.two_stage import _features, gt_in_input_frame
from .batching import map_canvas_groups


def _head_kind(head) -> Optional[str]:
    """Which target machinery of mmdet the dense head uses (None: unsupported)."""
    from mmdet.models.dense_heads import AnchorHead, FCOSHead, YOLOV3Head
    if isinstance(head, YOLOV3Head):
        return 'yolo'
    if isinstance(head, FCOSHead):
        return 'points'
    if isinstance(head, AnchorHead):
        return 'anchors'
    return None


def _flat_cls_logits(head, kind: str, outs, i: int) -> Tensor:
    """Class logits ``[num_priors, K]`` of image ``i``, priors in mmdet's order
    (levels, then rows, columns, base priors: the order of ``grid_priors``)."""
    if kind == 'yolo':
        maps = outs[0]
        return torch.cat([m[i].permute(1, 2, 0).reshape(-1, head.num_attrib)[:, 5:] for m in maps])
    return torch.cat([s[i].permute(1, 2, 0).reshape(-1, head.cls_out_channels) for s in outs[0]])


def _assigned_labels(head, kind: str, featmap_sizes, meta: dict, gt, device) -> Tensor:
    """The head's own assignment of priors to ground truth on the clean image:
    one label per prior (flattened like :func:`_flat_cls_logits`), -1 where the
    prior is not matched to an object."""
    num_classes = head.num_classes
    if kind == 'yolo':
        anchors = head.prior_generator.grid_priors(featmap_sizes, device=device)
        flags = head.responsible_flags(featmap_sizes, gt.bboxes, device)
        target_maps, _ = head.get_targets([anchors], [flags], [gt])
        t = torch.cat([m[0] for m in target_maps])          # [num_priors, 5 + C]
        pos = t[:, 4] > 0
        return torch.where(pos, t[:, 5:].argmax(1), torch.full_like(pos, -1, dtype=torch.long))
    if kind == 'points':
        points = head.prior_generator.grid_priors(featmap_sizes, device=device)
        labels, _ = head.get_targets(points, [gt])
        labels = torch.cat(labels).long()
    else:
        anchors, valid = head.get_anchors(featmap_sizes, [meta], device=device)
        res = head.get_targets(anchors, valid, [gt], [meta])
        # AnchorHead returns the labels first; ATSS-like heads return the
        # anchors first, then the labels: take the first integer list.
        levels = next(r for r in res if isinstance(r, (list, tuple)) and len(r)
                      and torch.is_tensor(r[0]) and not r[0].is_floating_point())
        labels = torch.cat([lv[0] for lv in levels]).long()
    return torch.where((labels >= 0) & (labels < num_classes), labels,
                       torch.full_like(labels, -1))


@TARGETS.register_module()
class OneStageTargets(TargetSet):
    """Priors that the dense head's own assigner matches to ground truth.

    On the clean image the head's training-time target machinery assigns
    priors to ground-truth boxes (RetinaNet/SSD: the MaxIoU assigner of
    ``train_cfg``; ATSS: the ATSS assigner; FCOS: the points inside a box of
    the right size range with centre sampling; YOLOv3: the responsible grid
    cell and best anchor); every matched prior is a target labelled with its
    box's class. Each iteration runs backbone, neck and head on the whole
    image (a one-stage detector has no cheaper part to skip) and reads the
    class logits of the targets. Priors are indexed in the image's own
    canvas, and every forward is made per canvas group
    (:mod:`mmdag.targets.batching`), so the indices stay valid whichever
    images are still being attacked.

    "Still correct":
        * softmax heads with a background logit (SSD): ``argmax == label``,
          the paper's rule; background is never an adversarial label.
        * sigmoid heads (RetinaNet, FCOS, ATSS, YOLOv3) have no background
          logit and every class is scored on its own: a target is still
          correct while its true class's score is above the head's test
          ``score_thr`` (the score under which mmdet drops the detection
          before NMS). DAG pushes that logit down and the adversarial class's
          up; it stops when every true-class score is under the threshold.
          For YOLOv3 the objectness is not attacked: the rule reads the class
          score only (conservative: a prior whose objectness fell under
          ``conf_thr`` still counts as correct).

    Args:
        model: a ``SingleStageDetector`` (unwrapped, eval mode) with one of
            the supported dense heads and its ``train_cfg`` (the assigner).
        inputs (list[Tensor]): clean images ``[3, H, W]`` (0..255).
        data_samples (list[DetDataSample]): samples with ``gt_instances``.
        score_thr (float, optional): the sigmoid rule's threshold; None = the
            head's ``test_cfg.score_thr``. Defaults to None.
        gt_frame (str): 'original' (boxes of the zoo test pipelines, scaled by
            ``scale_factor``) or 'input'. Defaults to 'original'.
    """

    family = 'MMDetection one-stage (RetinaNet, FCOS, ATSS, SSD, YOLOv3 dense heads)'

    @staticmethod
    def accepts(model) -> bool:
        from mmdet.models.detectors import SingleStageDetector
        return (isinstance(model, SingleStageDetector)
                and _head_kind(getattr(model, 'bbox_head', None)) is not None)

    def __init__(self, model, inputs: Sequence[Tensor], data_samples: list,
                 score_thr: Optional[float] = None, gt_frame: str = 'original') -> None:
        head = model.bbox_head
        kind = _head_kind(head)
        if kind is None:
            raise UnsupportedModelError(
                f'mmdag has no DAG target adapter for the dense head {type(head).__name__}. '
                f'Supported families: {self.family}.')
        if kind != 'points' and getattr(head, 'assigner', None) is None:
            raise UnsupportedModelError(
                f'{type(head).__name__} has no assigner: keep model.train_cfg in the config, '
                'DAG uses the head\'s own assigner to choose its targets')
        if gt_frame not in ('original', 'input'):
            raise ValueError(f"gt_frame must be 'original' or 'input', got {gt_frame!r}")
        self.model, self.kind = model, kind
        self.samples = list(data_samples)
        self.sigmoid = kind == 'yolo' or bool(getattr(head, 'use_sigmoid_cls', False))
        if score_thr is None:
            score_thr = float((head.test_cfg or {}).get('score_thr', 0.05))
        self.settings = dict(head=type(head).__name__, sigmoid=self.sigmoid,
                             score_thr=score_thr if self.sigmoid else None)
        t = min(max(score_thr, 1e-6), 1 - 1e-6)
        self.threshold = math.log(t / (1 - t))
        num_classes = head.num_classes
        images = [im.float() for im in inputs]

        def assign(group):
            # the priors of an image's own canvas: feature-map sizes and flat
            # prior indices are those of every later forward of this image
            x, metas = _features(model, [images[k] for k in group],
                                 [self.samples[k] for k in group])
            maps = head(x)[0]
            featmap_sizes = [m.shape[-2:] for m in maps]
            device = maps[0].device
            out = []
            for k, meta in zip(group, metas):
                gt = gt_in_input_frame(self.samples[k], gt_frame, device)
                if gt is None or len(gt) == 0:
                    out.append(torch.zeros(0, dtype=torch.long, device=device))
                else:
                    out.append(_assigned_labels(head, kind, featmap_sizes, meta, gt, device))
            return out

        with torch.no_grad():
            assigned = map_canvas_groups(model, images, assign)
        self.index, labels = [], []
        for lab in assigned:
            keep = torch.nonzero(lab >= 0)[:, 0]
            self.index.append(keep)
            labels.append(lab[keep])
        super().__init__(labels, num_classes if self.sigmoid else num_classes + 1)
        if not self.sigmoid:
            self.exclude_adv = (num_classes, )   # background is never an adversarial label

    def logits(self, images: Sequence[Tensor], indices: Sequence[int]) -> List[Tensor]:
        head = self.model.bbox_head

        def forward(group):
            ids = [indices[k] for k in group]
            x, _ = _features(self.model, [images[k] for k in group],
                             [self.samples[i] for i in ids])
            outs = head(x)
            return [_flat_cls_logits(head, self.kind, outs, j)[self.index[i]]
                    for j, i in enumerate(ids)]

        return map_canvas_groups(self.model, images, forward)

    def correct(self, logits: Tensor, labels: Tensor) -> Tensor:
        if not self.sigmoid:
            return super().correct(logits, labels)
        if logits.numel() == 0:
            return torch.zeros(labels.shape, dtype=torch.bool, device=labels.device)
        return logits.gather(1, labels[:, None])[:, 0] > self.threshold
