"""Region proposals of an MMDetection two-stage detector as DAG targets."""
import copy
import types
from contextlib import contextmanager
from typing import List, Sequence

import torch
from torch import Tensor

from mmdag.attacks import TargetSet
from mmdag.errors import UnsupportedModelError
from mmdag.registry import TARGETS
from .batching import map_canvas_groups
from .candidates import check_mode, two_stage_loss
from .common import features as _features  # noqa: F401
from .common import gt_in_input_frame
from .det_loss import DetectorLoss


def _roi_context(head, x) -> dict:
    """The extra features the RoI head's own ``predict`` computes and passes to
    its box branch: HTC's semantic feature, SCNet's semantic and global context."""
    kwargs = {}
    if getattr(head, 'with_semantic', False):
        kwargs['semantic_feat'] = head.semantic_head(x)[1]
    if getattr(head, 'with_glbctx', False):
        kwargs['glbctx_feat'] = head.glbctx_head(x)[1]
    return kwargs


def _log_activation(bbox_head, cls_score: Tensor) -> Tensor:
    """Heads with a custom classifier (the seesaw loss: C class logits plus 2
    objectness logits) score boxes with ``loss_cls.get_activation``, C + 1
    probabilities whose argmax is the detector's decision. DAG attacks their
    logarithm, computed in log space for the seesaw loss."""
    import torch.nn.functional as F
    loss = bbox_head.loss_cls
    if type(loss).__name__ == 'SeesawLoss':
        classes, objectness = loss._split_cls_score(cls_score)
        log_obj = F.log_softmax(objectness, dim=-1)
        return torch.cat([F.log_softmax(classes, dim=-1) + log_obj[..., :1], log_obj[..., 1:]],
                         dim=-1)
    return loss.get_activation(cls_score).clamp_min(1e-30).log()


def _roi_logits(model, x, boxes: List[Tensor], metas: list) -> List[Tensor]:
    """Classification logits ``[n_i, C + 1]`` of the RoI head on fixed boxes.

    Standard RoI heads (FPN or C4 shared head, Mask R-CNN's box branch): the
    box head's ``cls_score``. Cascade heads (Cascade R-CNN, HTC, SCNet): the
    score the cascade reports at test time, the mean of every stage's logits,
    each stage on the boxes the previous stage refined
    (``CascadeRoIHead._refine_roi``), with the semantic / global-context
    features the head's ``predict`` passes. Custom classifiers (seesaw loss):
    the log of the head's activation (:func:`_log_activation`).
    """
    from mmdet.structures.bbox import bbox2roi
    rois = bbox2roi(boxes)
    head = model.roi_head
    sizes = [len(b) for b in boxes]
    if not sum(sizes):   # no box at all: the cascade's refinement and SABL's head cannot take it
        last = (head.bbox_head[-1] if isinstance(head.bbox_head, torch.nn.ModuleList)
                else head.bbox_head)
        return [x[0].new_zeros((0, last.num_classes + 1)) for _ in sizes]
    kwargs = _roi_context(head, x)
    if hasattr(head, '_refine_roi'):
        _, scores, _ = head._refine_roi(x, rois, metas, sizes, **kwargs)
        return list(scores)
    score = head._bbox_forward(x, rois, **kwargs)['cls_score']
    if head.bbox_head.custom_cls_channels:
        score = _log_activation(head.bbox_head, score)
    return list(score.split(sizes, 0))


#: whether two-stage targets differentiate RoIAlign only on the RoIs with a
#: gradient (bitwise the same result; False gives mmcv's stock backward, for
#: speed comparisons)
ROW_SPARSE_BACKWARD = True
_ROW_SPARSE = None


def _row_sparse_roi_align():
    """mmcv's RoIAlign with a backward that skips the RoIs whose output
    gradient is zero (built once, on first use, as mmcv's ops are)."""
    global _ROW_SPARSE
    if _ROW_SPARSE is None:
        from mmcv.ops.roi_align import RoIAlignFunction, ext_module
        from torch.autograd.function import once_differentiable

        class RowSparseRoIAlignFunction(RoIAlignFunction):
            """The forward is mmcv's. The backward is mmcv's on the RoIs with a
            non-zero output gradient only: during DAG only the targets still
            correct have one, and mmcv's CPU backward (single-threaded, the
            bilinear weights recomputed for every channel) is most of a
            two-stage iteration's time. The result is bitwise the same: a
            skipped RoI would add exact zeros to the input gradient."""

            @staticmethod
            @once_differentiable
            def backward(ctx, grad_output):
                rois, argmax_y, argmax_x = ctx.saved_tensors
                live = grad_output.flatten(1).ne(0).any(1)
                keep = live.nonzero()[:, 0]
                if len(keep) < len(live):
                    grad_output, rois = grad_output[keep], rois[keep]
                    if ctx.pool_mode == 0:
                        argmax_y, argmax_x = argmax_y[keep], argmax_x[keep]
                grad_input = grad_output.new_zeros(ctx.input_shape)
                if len(keep):
                    ext_module.roi_align_backward(
                        grad_output.contiguous(), rois, argmax_y, argmax_x, grad_input,
                        aligned_height=ctx.output_size[0], aligned_width=ctx.output_size[1],
                        spatial_scale=ctx.spatial_scale, sampling_ratio=ctx.sampling_ratio,
                        pool_mode=ctx.pool_mode, aligned=ctx.aligned)
                return grad_input, None, None, None, None, None, None

        _ROW_SPARSE = RowSparseRoIAlignFunction
    return _ROW_SPARSE


@contextmanager
def row_sparse_roi_align(model):
    """Inside, the model's mmcv ``RoIAlign`` layers (not those that call
    torchvision) differentiate only the RoIs that get a gradient
    (:func:`_row_sparse_roi_align`); outside, they are the stock layers."""
    try:
        from mmcv.ops import RoIAlign
    except ImportError:   # no mmcv ops: nothing to change
        yield
        return
    layers = [m for m in model.modules() if type(m) is RoIAlign and not m.use_torchvision
              and 'forward' not in m.__dict__] if ROW_SPARSE_BACKWARD else []
    if layers:
        from mmcv.ops.roi_align import RoIAlignFunction
        fn = _row_sparse_roi_align()

        def forward(self, input, rois):
            # CPU only: mmcv's CUDA backward is parallel, and selecting the
            # live RoIs (a nonzero, a host synchronisation) made a two-stage
            # iteration slower there (H200: 0.83x the stock backward's speed)
            f = RoIAlignFunction if input.is_cuda else fn
            return f.apply(input, rois, self.output_size, self.spatial_scale,
                           self.sampling_ratio, self.pool_mode, self.aligned)

        for m in layers:
            m.forward = types.MethodType(forward, m)
    try:
        yield
    finally:
        for m in layers:
            del m.forward


@contextmanager
def _stage_test_cfg(stage, cfg):
    """The stage's ``test_cfg`` replaced by ``cfg`` while the block runs."""
    saved = stage.test_cfg
    stage.test_cfg = cfg
    try:
        yield
    finally:
        stage.test_cfg = saved


def assign_proposals(iou: Tensor, gt_labels: Tensor, probs: Tensor, iou_thr: float,
                     score_thr: float):
    """Which proposals are targets, and their labels (the authors' rule).

    A proposal is matched to the ground-truth box of largest IoU among the
    boxes that pass both tests: IoU above ``iou_thr``, and the proposal's
    clean softmax score of that box's class above ``score_thr``. It is a
    target when some box passes; its label is that box's class.

    Args:
        iou (Tensor): ``[P, G]`` IoU of the proposals with the boxes.
        gt_labels (Tensor): ``[G]`` classes of the boxes.
        probs (Tensor): ``[P, C + 1]`` clean softmax scores of the proposals.

    Returns:
        tuple[Tensor, Tensor]: ``keep [P]`` (bool) and ``labels [P]``.
    """
    score = probs[:, gt_labels]                              # [P, G]
    ok = (iou > iou_thr) & (score > score_thr)
    best = torch.where(ok, iou, torch.full_like(iou, -1.0)).argmax(1)
    return ok.any(1), gt_labels[best]


@TARGETS.register_module()
class TwoStageTargets(DetectorLoss, TargetSet):
    """Dense RPN proposals that overlap a ground-truth box (Xie et al., Sec. 3.2).

    On the clean image the detector's own RPN proposes boxes with NMS at
    ``rpn_nms_iou`` (0.9 instead of the usual 0.7, so the set is dense) keeping
    ``rpn_max_per_img`` (Cascade RPN: its last stage, under the same
    settings); a proposal is a target when some ground-truth box has IoU
    above ``iou_thr`` with it and a clean score of the box's class above
    ``score_thr``; its label is the class of the largest-IoU such box (the
    authors' rule, :func:`assign_proposals`). The
    proposals stay fixed during the attack: each iteration runs backbone, neck
    and RoI head only. The background logit is never an adversarial label.
    Every forward is made per canvas group (:mod:`mmdag.targets.batching`), so
    an image's proposals and logits do not depend on its batch companions.

    Args:
        model: a ``TwoStageDetector`` with an RPN (unwrapped, eval mode).
        inputs (list[Tensor]): clean images ``[3, H, W]`` (0..255).
        data_samples (list[DetDataSample]): samples with ``gt_instances``.
        rpn_nms_iou (float): RPN NMS IoU threshold. Defaults to 0.9.
        rpn_max_per_img (int): proposals kept after NMS. Defaults to 3000.
        rpn_nms_pre (int): top-scoring anchors per level before NMS.
            Defaults to 6000.
        iou_thr (float): minimum IoU with a ground-truth box. Defaults to 0.1.
        score_thr (float): minimum clean softmax score of the box's class.
            Defaults to 0.1.
        gt_frame (str): 'original' when the test pipeline loads annotations
            after ``Resize`` (the mmdet zoo configs), so boxes are scaled by
            ``scale_factor``; 'input' when they are already resized.
            Defaults to 'original'.
    """

    family = 'MMDetection two-stage (Faster/Mask/Cascade R-CNN with an RPN)'

    @staticmethod
    def accepts(model) -> bool:
        from mmdet.models.detectors import TwoStageDetector
        return isinstance(model, TwoStageDetector)

    def __init__(self, model, inputs: Sequence[Tensor], data_samples: list,
                 rpn_nms_iou: float = 0.9, rpn_max_per_img: int = 3000, rpn_nms_pre: int = 6000,
                 iou_thr: float = 0.1, score_thr: float = 0.1, gt_frame: str = 'original') -> None:
        from mmdet.structures.bbox import bbox_overlaps
        from mmengine.config import ConfigDict
        if not getattr(model, 'with_rpn', False):
            raise UnsupportedModelError(
                f'{type(model).__name__} has no RPN: DAG on two-stage detectors attacks the '
                "detector's own proposals (precomputed proposals are not supported)")
        bbox_head = model.roi_head.bbox_head
        bbox_head = bbox_head[-1] if isinstance(bbox_head, torch.nn.ModuleList) else bbox_head
        if getattr(bbox_head.loss_cls, 'use_sigmoid', False) or (
                bbox_head.custom_cls_channels
                and isinstance(model.roi_head.bbox_head, torch.nn.ModuleList)):
            raise UnsupportedModelError(
                'this RoI head does not score C classes + background with a softmax; '
                'DAG on two-stage detectors supports softmax box heads')
        if gt_frame not in ('original', 'input'):
            raise ValueError(f"gt_frame must be 'original' or 'input', got {gt_frame!r}")
        self.model = model
        self.samples = list(data_samples)
        self.gt_frame = gt_frame
        self.settings = dict(rpn_nms_iou=rpn_nms_iou, rpn_max_per_img=rpn_max_per_img,
                             rpn_nms_pre=rpn_nms_pre, iou_thr=iou_thr, score_thr=score_thr)
        num_classes = bbox_head.num_classes
        # a deep copy: ConfigDict.update merges nested dicts in place, which
        # would change the model's own RPN test settings for every later
        # prediction (ORIG / ADVR / PERM included)
        rpn_cfg = ConfigDict(copy.deepcopy(dict(model.rpn_head.test_cfg or {})))
        rpn_cfg['nms_pre'] = rpn_nms_pre
        rpn_cfg['max_per_img'] = rpn_max_per_img
        rpn_cfg['nms'] = ConfigDict(type='nms', iou_threshold=rpn_nms_iou)
        rpn_cfg.setdefault('min_bbox_size', 0)
        images = [im.float() for im in inputs]

        def proposals_and_scores(group):
            x, metas = _features(model, [images[k] for k in group],
                                 [self.samples[k] for k in group])
            if type(model.rpn_head).__name__ == 'CascadeRPNHead':
                # its stages refine anchors with adaptive convolutions and it has no
                # plain forward: its own predict, whose last stage proposes under
                # the dense settings (the ones the report prints)
                from mmdet.structures import DetDataSample
                with _stage_test_cfg(model.rpn_head.stages[-1], rpn_cfg):
                    proposals = model.rpn_head.predict(
                        x, [DetDataSample(metainfo=m) for m in metas], rescale=False)
            else:
                outs = model.rpn_head(x)
                proposals = model.rpn_head.predict_by_feat(*outs, batch_img_metas=metas,
                                                           cfg=rpn_cfg, rescale=False)
            boxes = [p.bboxes for p in proposals]
            return list(zip(boxes, _roi_logits(model, x, boxes, metas)))

        with torch.no_grad():
            boxes, clean = zip(*map_canvas_groups(model, images, proposals_and_scores))
        self.boxes, labels = [], []
        for i, s in enumerate(self.samples):
            gt = gt_in_input_frame(s, gt_frame, boxes[i].device)
            gt_boxes = gt.bboxes if gt is not None else boxes[i].new_zeros(0, 4)
            if len(gt_boxes) == 0 or len(boxes[i]) == 0:
                keep = torch.zeros(len(boxes[i]), dtype=torch.bool, device=boxes[i].device)
                lab = torch.zeros(len(boxes[i]), dtype=torch.long, device=boxes[i].device)
            else:
                keep, lab = assign_proposals(bbox_overlaps(boxes[i], gt_boxes), gt.labels,
                                             clean[i].softmax(1), iou_thr, score_thr)
            self.boxes.append(boxes[i][keep].detach())
            labels.append(lab[keep])
        super().__init__(labels, num_classes + 1)
        self.exclude_adv = (num_classes, )   # background is never an adversarial label
        self.background = num_classes

    def logits(self, images: Sequence[Tensor], indices: Sequence[int]) -> List[Tensor]:
        def forward(group):
            ids = [indices[k] for k in group]
            x, metas = _features(self.model, [images[k] for k in group],
                                 [self.samples[i] for i in ids])
            return _roi_logits(self.model, x, [self.boxes[i] for i in ids], metas)

        with row_sparse_roi_align(self.model):
            return map_canvas_groups(self.model, images, forward)

    def candidate_loss(self, images: Sequence[Tensor], indices: Sequence[int],
                       mode: str = 'vanishing') -> List[Tensor]:
        """TOG's Faster R-CNN loss of each image (:func:`~mmdag.targets.candidates.two_stage_loss`):
        every RPN anchor, and the RoI head on the current image's proposals."""
        check_mode(mode)

        def forward(group):
            ids = [indices[k] for k in group]
            x, metas = _features(self.model, [images[k] for k in group],
                                 [self.samples[i] for i in ids])
            return two_stage_loss(self.model, x, metas, mode, _roi_logits)

        return map_canvas_groups(self.model, images, forward)
