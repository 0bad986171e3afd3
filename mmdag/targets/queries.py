"""Decoder queries of an MMDetection DETR-like detector as DAG targets.

DETR, Conditional DETR, DAB-DETR, Deformable DETR (one- and two-stage), DINO
and DDQ-DETR classify a fixed number of decoder queries; the last decoder
layer's class scores are what the detector outputs, so they are DAG's logits.

**Targets: the clean predictions that detect a ground-truth object.** A query
is a target when, on the clean image, its last-layer box overlaps a
ground-truth box with IoU >= ``iou_thr`` (its best match gives the label) and
it is correct for that box's class (below). This is the query version of the
paper's detection targets (every dense proposal that overlaps a ground-truth
box, not only the one a training loss would match), and it is chosen over the
head's Hungarian matcher (one query per object) because the DETR heads
without NMS (Deformable DETR, DINO, DDQ) output several queries per object:
flipping only the matched one leaves its duplicates, and one of them then
becomes the detection that mAP counts. No ``train_cfg`` is needed.

**Still correct:** DETR's softmax head (C classes + no-object): the argmax
over the C classes is the label, which is what its ``predict`` outputs for
every query (no-object winning only lowers the query's score); the no-object
logit is never an adversarial label.
Sigmoid heads (all the others): the true class's score above ``score_thr``
(the head's test ``score_thr`` when it has one, else 0.05, the one-stage
adapter's rule); mmdet keeps the top ``max_per_img`` query-class scores with
no threshold, so the threshold is DAG's definition of "still detected".

**Query selection** (two-stage Deformable DETR, DINO, DDQ choose their
decoder queries from the encoder's top-scoring proposals):
``query_selection='fixed'`` (the default) records the selection on the clean
image and replays it during the attack, like the paper's fixed proposals, so a
target is the same query at every iteration; ``'rerun'`` lets the perturbed
encoder choose again (a target index then names the rank, not the proposal).
DDQ's distinct-query NMS inside the decoder always re-runs; its targets are
chosen among the queries its clean prediction keeps. The record and replay
are :class:`mmdag.targets.query_selection.QuerySelection`.
"""
import inspect
from typing import List, Optional, Sequence

import torch
from torch import Tensor

from mmdag.attacks import TargetSet
from mmdag.registry import TARGETS
from .batching import map_canvas_groups
from .candidates import check_mode, query_loss
from .common import above_threshold, gt_in_input_frame, score_logit
from .det_loss import DetectorLoss
from .query_selection import QuerySelection, two_stage_selection

_Selection = QuerySelection     # its name before it moved (tests/test_targets/test_queries.py)


def _sigmoid_head(head) -> bool:
    return bool(getattr(head.loss_cls, 'use_sigmoid', False))


@TARGETS.register_module()
class QueryTargets(DetectorLoss, TargetSet):
    """Decoder queries of a DETR-like detector that detect a ground-truth
    object on the clean image (see the module docstring for the rules).

    Args:
        model: a ``DetectionTransformer`` (DETR, Conditional DETR, DAB-DETR,
            Deformable DETR, DINO, DDQ-DETR), unwrapped, eval mode.
        inputs (list[Tensor]): clean images ``[3, H, W]`` (0..255).
        data_samples (list[DetDataSample]): samples with ``gt_instances``.
        iou_thr (float): minimum IoU of a query's clean box with a
            ground-truth box. Defaults to 0.1 (the two-stage proposal rule).
        score_thr (float, optional): sigmoid heads' "still detected"
            threshold; None = the head's test ``score_thr``, else 0.05.
        query_selection (str): 'fixed' or 'rerun' (two-stage query
            selection only). Defaults to 'fixed'.
        gt_frame (str): 'original' (boxes of the zoo test pipelines, scaled by
            ``scale_factor``) or 'input'. Defaults to 'original'.
    """

    family = ('MMDetection DETR-like detectors (DETR, Conditional DETR, DAB-DETR, '
              'Deformable DETR, DINO, DDQ-DETR)')

    @staticmethod
    def accepts(model) -> bool:
        from mmdet.models.detectors.base_detr import DetectionTransformer
        return isinstance(model, DetectionTransformer)

    @staticmethod
    def _head(model):
        return model.bbox_head

    def __init__(self, model, inputs: Sequence[Tensor], data_samples: list,
                 iou_thr: float = 0.1, score_thr: Optional[float] = None,
                 query_selection: str = 'fixed', gt_frame: str = 'original') -> None:
        if query_selection not in ('fixed', 'rerun'):
            raise ValueError(f"query_selection must be 'fixed' or 'rerun', got {query_selection!r}")
        if gt_frame not in ('original', 'input'):
            raise ValueError(f"gt_frame must be 'original' or 'input', got {gt_frame!r}")
        head = self._head(model)
        self.model, self.head = model, head
        self.samples = list(data_samples)
        self.gt_frame = gt_frame
        self.sigmoid = _sigmoid_head(head)
        self.activation = 'sigmoid' if self.sigmoid else 'softmax'
        num_classes = head.num_classes
        self.num_logits = num_classes if self.sigmoid else num_classes + 1
        if score_thr is None:
            score_thr = float((head.test_cfg or {}).get('score_thr', 0.05))
        self.threshold = score_logit(score_thr)
        kind = None if self.mask_queries else two_stage_selection(model)
        fixed = kind and query_selection == 'fixed'
        self.selection = QuerySelection(model, kind) if fixed else None
        self.settings = dict(
            head=type(head).__name__, sigmoid=self.sigmoid, iou_thr=iou_thr,
            score_thr=score_thr if self.sigmoid else None,
            query_selection=query_selection if kind else 'learned queries',
            attacked='last decoder layer class logits of the queries whose clean box '
                     'overlaps a ground-truth box and that detect its class')
        images = [im.float() for im in inputs]

        def clean(group):
            cls, boxes, metas, keep = self._forward([images[k] for k in group], group,
                                                    record=True)
            return [(cls[j], boxes[j], metas[j], None if keep is None else keep[j])
                    for j in range(len(group))]

        with torch.no_grad():
            outs = map_canvas_groups(model, images, clean)
        self.index, labels = [], []
        for i, (cls, box, meta, keep) in enumerate(outs):
            gt = gt_in_input_frame(self.samples[i], gt_frame, cls.device, meta=meta,
                                   masks=self.mask_queries)
            none = torch.zeros(0, dtype=torch.long, device=cls.device)
            if gt is None or len(gt) == 0:
                self.index.append(none)
                labels.append(none)
                continue
            best_iou, best = self._overlaps(box, meta, gt).max(1)
            lab = gt.labels[best]
            ok = (best_iou >= iou_thr) & self.correct(cls, lab)
            if keep is not None:   # DDQ: only the queries its prediction keeps
                ok &= keep
            idx = torch.nonzero(ok)[:, 0]
            self.index.append(idx)
            labels.append(lab[idx])
        super().__init__(labels, self.num_logits)
        if not self.sigmoid:
            self.exclude_adv = (num_classes, )   # no-object is never an adversarial label
            self.background = num_classes

    mask_queries = False

    @staticmethod
    def _overlaps(box: Tensor, meta: dict, gt) -> Tensor:
        """IoU ``[Q, G]`` of the queries' clean boxes (normalised cx, cy, w,
        h) with the ground-truth boxes, as the detector outputs them: in the
        input frame, clamped to the image."""
        from mmdet.structures.bbox import bbox_cxcywh_to_xyxy, bbox_overlaps
        h, w = meta['img_shape'][:2]
        size = box.new_tensor([w, h, w, h]).float()
        xyxy = torch.min((bbox_cxcywh_to_xyxy(box.float()) * size).clamp_min(0), size)
        return bbox_overlaps(xyxy, gt.bboxes)

    def _forward(self, images: Sequence[Tensor], ids: Sequence[int], record: bool = False,
                 current: bool = False):
        """Last decoder layer's class logits ``[B, Q, C']`` and boxes
        ``[B, Q, 4]`` (normalised cx, cy, w, h) of images sharing a canvas,
        with the metas, and DDQ's per-image kept-query masks (else None).
        ``current``: the encoder chooses the queries on these images (no
        recorded selection is replayed or recorded)."""
        model = self.model
        data = model.data_preprocessor(
            dict(inputs=list(images), data_samples=[self.samples[i] for i in ids]), False)
        samples = data['data_samples']
        feats = model.extract_feat(data['inputs'])
        if self.selection is not None and not current:
            with self.selection.active(ids, replay=not record):
                head_inputs = model.forward_transformer(feats, samples)
        else:
            head_inputs = model.forward_transformer(feats, samples)
        params = inspect.signature(self.head.forward).parameters
        outs = self.head(**{k: v for k, v in head_inputs.items() if k in params})
        keep = None
        cache = getattr(self.head, 'cache_dict', None)
        if isinstance(cache, dict) and 'distinct_query_mask' in cache:
            n = cache['num_heads']
            masks = cache['distinct_query_mask'][-1]
            keep = [masks[j * n][0] for j in range(len(images))]
        return outs[0][-1], outs[1][-1], [s.metainfo for s in samples], keep

    def logits(self, images: Sequence[Tensor], indices: Sequence[int]) -> List[Tensor]:
        def forward(group):
            ids = [indices[k] for k in group]
            cls, _, _, _ = self._forward([images[k] for k in group], ids)
            return [cls[j][self.index[i]] for j, i in enumerate(ids)]

        return map_canvas_groups(self.model, images, forward)

    def candidate_loss(self, images: Sequence[Tensor], indices: Sequence[int],
                       mode: str = 'vanishing') -> List[Tensor]:
        """TOG's loss over every query of each image
        (:func:`~mmdag.targets.candidates.query_loss`), the queries chosen on
        the current image."""
        check_mode(mode)

        def forward(group):
            ids = [indices[k] for k in group]
            cls = self._forward([images[k] for k in group], ids, current=True)[0]
            return query_loss(cls, self.sigmoid, mode)

        return map_canvas_groups(self.model, images, forward)

    def correct(self, logits: Tensor, labels: Tensor) -> Tensor:
        if not self.sigmoid:
            return foreground_argmax_correct(logits, labels)
        return above_threshold(logits, labels, self.threshold)


def foreground_argmax_correct(logits: Tensor, labels: Tensor) -> Tensor:
    """DETR's softmax head outputs every query with the argmax of its C class
    scores (``softmax(cls)[..., :-1].max(-1)``: no-object only lowers the
    score), so a query is still correct while its true class wins among the
    C classes, whatever the no-object logit does."""
    if logits.numel() == 0:
        return torch.zeros(labels.shape, dtype=torch.bool, device=labels.device)
    return logits[:, :-1].argmax(dim=1) == labels


@TARGETS.register_module()
class MaskQueryTargets(QueryTargets):
    """Queries of MMDetection's MaskFormer / Mask2Former (panoptic and instance
    segmentation) that segment a ground-truth object on the clean image.

    The rules of :class:`QueryTargets` with masks for boxes: a query is a
    target when its clean mask (``sigmoid(mask) > 0.5`` on the input image, as
    the fusion head thresholds it) overlaps a ground-truth instance mask (the
    filled box where the sample has no masks) with IoU >= ``iou_thr``, and its
    class argmax over the C classes + no-object is that instance's class; the
    logits are the last decoder layer's class logits, no-object never an
    adversarial label. Stuff regions of a panoptic ground truth (no instance)
    give no targets. Arguments as :class:`QueryTargets` (``score_thr`` and
    ``query_selection`` do not apply).
    """

    family = 'MMDetection MaskFormer / Mask2Former (panoptic, instance)'
    mask_queries = True

    @staticmethod
    def accepts(model) -> bool:
        from mmdet.models.detectors import MaskFormer
        return isinstance(model, MaskFormer)

    @staticmethod
    def _head(model):
        return model.panoptic_head

    def __init__(self, model, inputs: Sequence[Tensor], data_samples: list,
                 iou_thr: float = 0.1, gt_frame: str = 'original', **kwargs) -> None:
        super().__init__(model, inputs, data_samples, iou_thr=iou_thr, gt_frame=gt_frame,
                         **kwargs)
        self.settings.update(score_thr=None, query_selection='learned queries',
                             attacked='last decoder layer class logits of the queries whose clean '
                                      'mask overlaps a ground-truth instance and that predict '
                                      'its class')

    def correct(self, logits: Tensor, labels: Tensor) -> Tensor:
        """The argmax over the C classes + no-object: the panoptic fusion
        drops a query whose argmax is no-object (``labels.ne(num_classes)``),
        so here no-object winning does flip it (unlike DETR's box output)."""
        return TargetSet.correct(self, logits, labels)

    @staticmethod
    def _overlaps(mask: Tensor, meta: dict, gt) -> Tensor:
        """Mask IoU ``[Q, G]`` of the queries' clean masks (logits on the padded
        canvas) with the ground-truth instances, on the image."""
        h, w = meta['img_shape'][:2]
        pred = (mask[:, :h, :w] > 0).flatten(1).float()   # sigmoid > 0.5
        true = gt.masks.to_tensor(torch.float32, mask.device)[:, :h, :w].flatten(1)
        inter = pred @ true.T
        union = pred.sum(1, keepdim=True) + true.sum(1)[None] - inter
        return inter / union.clamp_min(1)

    def _forward(self, images: Sequence[Tensor], ids: Sequence[int], record: bool = False,
                 current: bool = False):
        model = self.model
        data = model.data_preprocessor(
            dict(inputs=list(images), data_samples=[self.samples[i] for i in ids]), False)
        samples = data['data_samples']
        feats = model.extract_feat(data['inputs'])
        cls, masks = model.panoptic_head.predict(feats, samples)
        return cls, masks, [s.metainfo for s in samples], None
