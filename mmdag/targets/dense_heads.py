"""Per-head target code for MMDetection's dense heads: the :class:`HeadSpec`
of the anchor heads (RetinaNet, ATSS, PAA, TOOD, RTMDet, YOLOF, DDOD, SABL)
and of the point heads (FCOS, VFNet, AutoAssign, Fovea, YOLOX, RepPoints).

The spec registry and what a spec is are in :mod:`mmdag.targets.head_specs`
(re-exported here, the one-stage adapter's entry point); the heatmap, SOLO
and YOLOv3 specs are in :mod:`mmdag.targets.grid_heads`, registered when
this module is imported.
"""
from contextlib import contextmanager
from typing import List

import torch
import torch.nn.functional as F
from torch import Tensor

from . import grid_heads  # noqa: F401  (registers the heatmap, SOLO and YOLOv3 specs)
from .head_specs import (AssignContext, HeadSpec, cls_maps, find_spec, finish, flat_logits,
                         level_labels, register, supported_heads)

__all__ = ['AssignContext', 'HeadSpec', 'cls_maps', 'find_spec', 'flat_logits', 'register',
           'supported_heads']


def _anchors(head, ctx):
    anchors, valid = head.get_anchors(ctx.featmap_sizes, [ctx.meta], device=ctx.device)
    return anchors[0], valid[0]


def _flat(maps: List[Tensor], channels: int) -> Tensor:
    """Level maps ``[1, A * c, H, W]`` -> ``[num_priors, c]`` in prior order."""
    return flat_logits(maps, 0, channels)


# --------------------------------------------------------------- anchor heads
@register('AnchorHead', attacked='anchors matched by the head\'s train_cfg assigner (MaxIoU for '
          'RetinaNet, SSD, YOLACT, FreeAnchor, PISA, GHM)')
def _assign_anchor(head, ctx):
    anchors, valid = _anchors(head, ctx)
    res = head._get_targets_single(torch.cat(anchors), torch.cat(valid), ctx.gt, ctx.meta)
    return finish(head, res[0])


@register('ATSSHead', 'GFLHead', attacked='anchors matched by the ATSS assigner')
def _assign_atss(head, ctx):
    anchors, valid = _anchors(head, ctx)
    res = head._get_targets_single(torch.cat(anchors), torch.cat(valid),
                                   [a.size(0) for a in anchors], ctx.gt, ctx.meta)
    return finish(head, res[1])     # (anchors, labels, ...)


@register('PAAHead', attacked='PAA\'s candidate anchors: the MaxIoU assignment of its train_cfg, '
          'before the GMM re-assignment that needs training losses')
def _assign_paa(head, ctx):
    anchors, valid = _anchors(head, ctx)
    res = head._get_targets_single(torch.cat(anchors), torch.cat(valid), ctx.gt, ctx.meta)
    return finish(head, res[0])


@contextmanager
def _tood_logits():
    """TOOD scores a class by ``sqrt(sigmoid(a) * sigmoid(b))``; while active,
    its forward returns the logit of that score, computed in log space."""
    from mmdet.models.dense_heads import tood_head

    def logit_of_geometric_mean(a, b):
        log_p = 0.5 * (F.logsigmoid(a) + F.logsigmoid(b))
        return log_p - torch.log(-torch.expm1(log_p).clamp(max=-1e-12))

    stock = tood_head.sigmoid_geometric_mean
    tood_head.sigmoid_geometric_mean = logit_of_geometric_mean
    try:
        yield
    finally:
        tood_head.sigmoid_geometric_mean = stock


def _tood_maps(head, x):
    with _tood_logits():
        return head(x)[0]


@register('TOODHead', cls_maps=_tood_maps,
          attacked='anchors matched by the task-aligned assigner on the clean predictions (the '
          'assigner of TOOD\'s training after its first epochs); the attacked logit is that of '
          'TOOD\'s score sqrt(sigmoid(cls) * sigmoid(prob))')
def _assign_tood(head, ctx):
    # TOOD's boxes: distances already decoded, in stride units
    return _assign_on_predictions(head, ctx, lambda anchors, bbox_preds: torch.cat(
        [b[0].permute(1, 2, 0).reshape(-1, 4) * s[0]
         for b, s in zip(bbox_preds, head.prior_generator.strides)]))


def _assign_on_predictions(head, ctx, decode):
    """``_get_targets_single(cls_scores, decoded boxes, anchors, valid, gt, meta)``
    of TOOD and RTMDet, on the image's clean predictions."""
    cls_scores, bbox_preds = ctx.outs[:2]      # what the head's forward returns, as its loss does
    anchors, valid = _anchors(head, ctx)
    res = head._get_targets_single(_flat(cls_scores, head.cls_out_channels),
                                   decode(anchors, bbox_preds), torch.cat(anchors),
                                   torch.cat(valid), ctx.gt, ctx.meta)
    return finish(head, res[1])     # (anchors, labels, ...)


@register('RTMDetHead', attacked='priors matched by the dynamic soft-label assigner on the clean '
          'predictions')
def _assign_rtmdet(head, ctx):
    from mmdet.structures.bbox import distance2bbox

    # RTMDet's boxes: distances from each prior, already scaled by the stride
    return _assign_on_predictions(head, ctx, lambda anchors, bbox_preds: torch.cat(
        [distance2bbox(a.reshape(-1, 4), b[0].permute(1, 2, 0).reshape(-1, 4))
         for a, b in zip(anchors, bbox_preds)]))


@register('YOLOFHead', attacked='anchors matched by the uniform assigner on the clean box '
          'predictions')
def _assign_yolof(head, ctx):
    anchors, valid = _anchors(head, ctx)
    box = ctx.outs[1][0][0].permute(1, 2, 0).reshape(-1, 4)
    res = head._get_targets_single(box, anchors[0], valid[0], ctx.gt, ctx.meta)
    return finish(head, res[0])


@register('DDODHead', attacked='anchors matched by DDOD\'s classification assigner (ATSS on the '
          'clean predictions)')
def _assign_ddod(head, ctx):
    cls_scores, bbox_preds = ctx.outs[:2]
    anchors, valid = _anchors(head, ctx)
    flat_cls = _flat(cls_scores, head.cls_out_channels)
    flat_box = _flat(bbox_preds, 4)
    res = head._get_targets_single(torch.cat(anchors), torch.cat(valid), flat_cls, flat_box,
                                   [a.size(0) for a in anchors], ctx.gt, ctx.meta,
                                   is_cls_assigner=True)
    return finish(head, res[1])


@register('SABLRetinaHead', attacked='square anchors matched by the approx MaxIoU assigner')
def _assign_sabl(head, ctx):
    from mmdet.models.dense_heads import GuidedAnchorHead
    approxs, inside = GuidedAnchorHead.get_sampled_approxs(head, ctx.featmap_sizes, [ctx.meta],
                                                           device=ctx.device)
    squares = head.get_anchors(ctx.featmap_sizes, [ctx.meta], device=ctx.device)
    res = head.get_targets(approxs, inside, squares, [ctx.gt], [ctx.meta])
    return finish(head, level_labels(res[0]))


# ---------------------------------------------------------------- point heads
@register('FCOSHead', attacked='points inside a box of the right size range (centre sampling as '
          'configured), FCOS\'s target rule')
def _assign_fcos(head, ctx):
    points = head.prior_generator.grid_priors(ctx.featmap_sizes, device=ctx.device)
    res = head.get_targets(points, [ctx.gt])
    return finish(head, torch.cat(res[0]))


@register('VFNetHead', attacked='VFNet\'s targets: ATSS-assigned anchors (use_atss) or '
          'FCOS\'s rule')
def _assign_vfnet(head, ctx):
    points = head.fcos_prior_generator.grid_priors(ctx.featmap_sizes, device=ctx.device)
    res = head.get_targets(list(ctx.outs[0]), points, [ctx.gt], [ctx.meta])
    return finish(head, level_labels(res[0]))


@register('AutoAssignHead', attacked='every point inside a ground-truth box (AutoAssign\'s '
          'candidate set, which it weighs during training); a point inside several boxes takes '
          'the smallest')
def _assign_autoassign(head, ctx):
    points = torch.cat(head.prior_generator.grid_priors(ctx.featmap_sizes, device=ctx.device))
    inside, _ = head._get_targets_single(ctx.gt, points)         # [num_points, num_gts]
    boxes = ctx.gt.bboxes
    area = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))[None].expand_as(inside)
    area = torch.where(inside, area, torch.full_like(area, float('inf')))
    best = area.argmin(1)
    labels = torch.where(inside.any(1), ctx.gt.labels[best], torch.full_like(best, -1))
    return finish(head, labels)


@register('FoveaHead', attacked='the fovea (shrunk centre region) cells of each box on its levels')
def _assign_fovea(head, ctx):
    priors = head.prior_generator.grid_priors(ctx.featmap_sizes, device=ctx.device)
    labels, _ = head.get_targets([ctx.gt], ctx.featmap_sizes, priors)
    return finish(head, labels)


@register('YOLOXHead', attacked='priors matched by SimOTA on the clean predictions')
def _assign_yolox(head, ctx):
    cls_scores, bbox_preds, objectness = ctx.outs[:3]
    priors = torch.cat(head.prior_generator.grid_priors(ctx.featmap_sizes, device=ctx.device,
                                                        with_stride=True))
    flat_cls = _flat(cls_scores, head.cls_out_channels)
    flat_box = head._bbox_decode(priors, _flat(bbox_preds, 4)[None])[0]
    flat_obj = _flat(objectness, 1)[:, 0]
    # YOLOXHead._get_targets_single's own assignment, with the assigner's labels kept
    from mmengine.structures import InstanceData
    offset = torch.cat([priors[:, :2] + priors[:, 2:] * 0.5, priors[:, 2:]], dim=-1)
    scores = (flat_cls.sigmoid() * flat_obj[:, None].sigmoid()).sqrt()
    res = head.assigner.assign(InstanceData(bboxes=flat_box, scores=scores, priors=offset), ctx.gt)
    labels = torch.full((len(priors), ), -1, dtype=torch.long, device=ctx.device)
    pos = res.gt_inds > 0
    labels[pos] = ctx.gt.labels[res.gt_inds[pos] - 1]
    return finish(head, labels)


@register('RepPointsHead', attacked='the point at each box centre on the box\'s level (the init '
          'stage\'s point assigner); logits of the refined classification')
def _assign_reppoints(head, ctx):
    centers, valid = head.get_points(ctx.featmap_sizes, [ctx.meta], ctx.device)
    if head.train_cfg['init']['assigner']['type'] == 'PointAssigner':
        candidates = centers
    else:
        candidates = head.centers_to_bboxes(centers)
    res = head.get_targets(candidates, valid, [ctx.gt], [ctx.meta], stage='init',
                           return_sampling_results=False)
    return finish(head, level_labels(res[0]))
