"""Per-head target code for MMDetection's dense heads.

Each supported dense head gets a :class:`HeadSpec` that reads what that head
really computes, instead of guessing the layout of ``get_targets``' return:

* ``assign(head, ctx)``: the head's own assignment of priors (anchors,
  points, grid cells, heatmap positions) to ground truth on the clean image,
  through the same target code its ``loss_by_feat`` calls; one label per
  prior, -1 where the prior is not a target.
* ``cls_maps(head, x)``: the head's class logit maps ``[B, A * C, H, W]`` per
  level, where the flat prior order (levels, rows, columns, base priors) is
  the order of ``assign``'s labels. Heads whose forward returns scores
  (TOOD's geometric mean of two sigmoids, CenterNet's sigmoid heatmap) give
  their logits here.

A spec is found through the head's class hierarchy (the most specific class
registered wins), so subclasses that change neither targets nor outputs
(e.g. ``RetinaSepBNHead``, ``NASFCOSHead``, ``RTMDetSepBNHead``) are covered
by their parent's spec.
"""
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass
class AssignContext:
    """What an ``assign`` function may read, for one image."""
    featmap_sizes: list        # per level (H, W) of the class maps
    meta: dict                 # the image's metainfo after the data preprocessor
    gt: object                 # InstanceData: bboxes, labels (and masks) in the input frame
    outs: tuple                # the head's clean outputs for this image (batch of 1)
    device: torch.device


@dataclass
class HeadSpec:
    name: str
    assign: Callable
    cls_maps: Optional[Callable] = None     # default: ``head(x)[0]``
    attacked: str = ''                      # what is attacked, for the docs
    sigmoid: Optional[bool] = None          # default: ``head.use_sigmoid_cls``


_SPECS: Dict[str, HeadSpec] = {}


def register(*class_names: str, **kwargs):
    def deco(fn):
        spec = HeadSpec(name=class_names[0], assign=fn, **kwargs)
        for n in class_names:
            _SPECS[n] = spec
        return fn
    return deco


def find_spec(head) -> Optional[HeadSpec]:
    """The spec of the most specific registered class of ``head``, or None."""
    for cls in type(head).__mro__:
        if cls.__name__ in _SPECS:
            return _SPECS[cls.__name__]
    return None


def supported_heads() -> List[str]:
    return sorted({s.name for s in _SPECS.values()})


def _finish(head, labels: Tensor) -> Tensor:
    """-1 for every prior that is not matched to a foreground class."""
    labels = labels.long()
    return torch.where((labels >= 0) & (labels < head.num_classes), labels, torch.full_like(labels, -1))


def _anchors(head, ctx):
    anchors, valid = head.get_anchors(ctx.featmap_sizes, [ctx.meta], device=ctx.device)
    return anchors[0], valid[0]


def _flat(maps: List[Tensor], channels: int) -> Tensor:
    """Level maps ``[1, A * c, H, W]`` -> ``[num_priors, c]`` in prior order."""
    return flat_logits(maps, 0, channels)


def _level_labels(levels: List[Tensor]) -> Tensor:
    """Per-level label tensors (any shape) -> one flat tensor in prior order."""
    return torch.cat([lv.reshape(-1) for lv in levels])


# --------------------------------------------------------------- anchor heads
@register('AnchorHead', attacked='anchors matched by the head\'s train_cfg assigner (MaxIoU for '
          'RetinaNet, SSD, YOLACT, FreeAnchor, PISA, GHM)')
def _assign_anchor(head, ctx):
    anchors, valid = _anchors(head, ctx)
    res = head._get_targets_single(torch.cat(anchors), torch.cat(valid), ctx.gt, ctx.meta)
    return _finish(head, res[0])


@register('ATSSHead', 'GFLHead', attacked='anchors matched by the ATSS assigner')
def _assign_atss(head, ctx):
    anchors, valid = _anchors(head, ctx)
    res = head._get_targets_single(torch.cat(anchors), torch.cat(valid), [a.size(0) for a in anchors],
                                   ctx.gt, ctx.meta)
    return _finish(head, res[1])     # (anchors, labels, ...)


@register('PAAHead', attacked='PAA\'s candidate anchors: the MaxIoU assignment of its train_cfg, '
          'before the GMM re-assignment that needs training losses')
def _assign_paa(head, ctx):
    anchors, valid = _anchors(head, ctx)
    res = head._get_targets_single(torch.cat(anchors), torch.cat(valid), ctx.gt, ctx.meta)
    return _finish(head, res[0])


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
    res = head._get_targets_single(_flat(cls_scores, head.cls_out_channels), decode(anchors, bbox_preds),
                                   torch.cat(anchors), torch.cat(valid), ctx.gt, ctx.meta)
    return _finish(head, res[1])     # (anchors, labels, ...)


@register('RTMDetHead', attacked='priors matched by the dynamic soft-label assigner on the clean '
          'predictions')
def _assign_rtmdet(head, ctx):
    from mmdet.structures.bbox import distance2bbox
    # RTMDet's boxes: distances from each prior, already scaled by the stride
    return _assign_on_predictions(head, ctx, lambda anchors, bbox_preds: torch.cat(
        [distance2bbox(a.reshape(-1, 4), b[0].permute(1, 2, 0).reshape(-1, 4))
         for a, b in zip(anchors, bbox_preds)]))


@register('YOLOFHead', attacked='anchors matched by the uniform assigner on the clean box predictions')
def _assign_yolof(head, ctx):
    anchors, valid = _anchors(head, ctx)
    box = ctx.outs[1][0][0].permute(1, 2, 0).reshape(-1, 4)
    res = head._get_targets_single(box, anchors[0], valid[0], ctx.gt, ctx.meta)
    return _finish(head, res[0])


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
    return _finish(head, res[1])


@register('SABLRetinaHead', attacked='square anchors matched by the approx MaxIoU assigner')
def _assign_sabl(head, ctx):
    from mmdet.models.dense_heads import GuidedAnchorHead
    approxs, inside = GuidedAnchorHead.get_sampled_approxs(head, ctx.featmap_sizes, [ctx.meta],
                                                           device=ctx.device)
    squares = head.get_anchors(ctx.featmap_sizes, [ctx.meta], device=ctx.device)
    res = head.get_targets(approxs, inside, squares, [ctx.gt], [ctx.meta])
    return _finish(head, _level_labels(res[0]))


# ---------------------------------------------------------------- point heads
@register('FCOSHead', attacked='points inside a box of the right size range (centre sampling as '
          'configured), FCOS\'s target rule')
def _assign_fcos(head, ctx):
    points = head.prior_generator.grid_priors(ctx.featmap_sizes, device=ctx.device)
    res = head.get_targets(points, [ctx.gt])
    return _finish(head, torch.cat(res[0]))


@register('VFNetHead', attacked='VFNet\'s targets: ATSS-assigned anchors (use_atss) or FCOS\'s rule')
def _assign_vfnet(head, ctx):
    points = head.fcos_prior_generator.grid_priors(ctx.featmap_sizes, device=ctx.device)
    res = head.get_targets(list(ctx.outs[0]), points, [ctx.gt], [ctx.meta])
    return _finish(head, _level_labels(res[0]))


@register('AutoAssignHead', attacked='every point inside a ground-truth box (AutoAssign\'s candidate '
          'set, which it weighs during training); a point inside several boxes takes the smallest')
def _assign_autoassign(head, ctx):
    points = torch.cat(head.prior_generator.grid_priors(ctx.featmap_sizes, device=ctx.device))
    inside, _ = head._get_targets_single(ctx.gt, points)         # [num_points, num_gts]
    boxes = ctx.gt.bboxes
    area = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))[None].expand_as(inside)
    area = torch.where(inside, area, torch.full_like(area, float('inf')))
    best = area.argmin(1)
    labels = torch.where(inside.any(1), ctx.gt.labels[best], torch.full_like(best, -1))
    return _finish(head, labels)


@register('FoveaHead', attacked='the fovea (shrunk centre region) cells of each box on its levels')
def _assign_fovea(head, ctx):
    priors = head.prior_generator.grid_priors(ctx.featmap_sizes, device=ctx.device)
    labels, _ = head.get_targets([ctx.gt], ctx.featmap_sizes, priors)
    return _finish(head, labels)


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
    return _finish(head, labels)


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
    return _finish(head, _level_labels(res[0]))


# -------------------------------------------------------------- heatmap heads
def _heatmap_peaks(target: Tensor) -> Tensor:
    """Labels per position of a ``[1, C, H, W]`` gaussian target: the class
    whose peak (value 1, a box's centre or corner) is there, else -1."""
    c, h, w = target.shape[1:]
    labels = torch.full((h * w, ), -1, dtype=torch.long, device=target.device)
    cls, ys, xs = torch.nonzero(target[0] == 1, as_tuple=True)
    labels[ys * w + xs] = cls
    return labels


def _centernet_maps(head, x):
    return [head.heatmap_head(f) for f in x]      # the heatmap logits, before the sigmoid


@register('CenterNetHead', cls_maps=_centernet_maps, sigmoid=True,
          attacked='the heatmap position of each box centre (the peak of CenterNet\'s target); '
          'the heatmap logit before its sigmoid')
def _assign_centernet(head, ctx):
    shape = (1, head.num_classes, *ctx.featmap_sizes[0])
    target, _ = head.get_targets([ctx.gt.bboxes], [ctx.gt.labels], shape,
                                 ctx.meta['batch_input_shape'])
    return _heatmap_peaks(target['center_heatmap_target'])


@register('CenterNetUpdateHead', attacked='the point at each box centre on the levels of its size '
          'range (the peak of CenterNet-update\'s heatmap target)')
def _assign_centernet_update(head, ctx):
    points = head.prior_generator.grid_priors(ctx.featmap_sizes, device=ctx.device)
    cls_targets, _ = head.get_targets(points, [ctx.gt])       # [num_points, C] gaussian heatmap
    labels = torch.full((cls_targets.shape[0], ), -1, dtype=torch.long, device=ctx.device)
    pts, cls = torch.nonzero(cls_targets == 1, as_tuple=True)
    labels[pts] = cls
    return labels


def _corner_maps(head, x):
    outs = head(x)
    return [outs[0][-1], outs[1][-1]]       # the last stack's corner heatmaps, what predict reads


@register('CornerHead', cls_maps=_corner_maps, sigmoid=True,
          attacked='the top-left and bottom-right corner positions of each box on the corner '
          'heatmaps (CornerNet, CentripetalNet)')
def _assign_corner(head, ctx):
    shape = (1, head.num_classes, *ctx.featmap_sizes[0])
    t = head.get_targets([ctx.gt.bboxes], [ctx.gt.labels], shape, ctx.meta['batch_input_shape'])
    return torch.cat([_heatmap_peaks(t['topleft_heatmap']), _heatmap_peaks(t['bottomright_heatmap'])])


# --------------------------------------------------- instance segmentation
SOLO_SUPPRESSED = -50.0    # the logit of a cell that SOLO's local-maximum filter zeroes


def _solo_local_max(logits: Tensor) -> Tensor:
    """SOLO's category maps as its ``predict`` scores them, in logit space.

    Every SOLO head keeps a cell's score only where it is the local maximum
    of its 2x2 neighbourhood (``max_pool2d(sigmoid(z), 2, 1, 1)[..., :-1, :-1]
    == sigmoid(z)``, computed on the scores exactly as mmdet does) and zeroes
    it elsewhere. Kept cells return their raw logit (pre-activation, with
    its gradient); zeroed cells return :data:`SOLO_SUPPRESSED`, whose score
    (about 2e-22) no threshold keeps, as mmdet's zero score."""
    scores = logits.sigmoid()
    keep = F.max_pool2d(scores, 2, stride=1, padding=1)[:, :, :-1, :-1] == scores
    return torch.where(keep, logits, torch.full_like(logits, SOLO_SUPPRESSED))


def _solo_maps(head, x):
    """The category logits of SOLO, DecoupledSOLO(-Light) and SOLOv2.

    In eval mode ``SOLOHead.forward`` and ``DecoupledSOLOHead.forward`` return
    ``sigmoid(cls) * local_max`` (probabilities), so their category branch is
    run here as their forward runs it, up to ``conv_cls``. SOLOv2's forward
    returns the raw logits (its ``predict_by_feat`` applies the sigmoid and
    the local maximum)."""
    from mmdet.models.dense_heads import SOLOV2Head
    if isinstance(head, SOLOV2Head):
        return [_solo_local_max(z) for z in head(x)[1]]
    feats = head.resize_feats(x)
    maps = []
    for i in range(head.num_levels):
        cls_feat = feats[i]
        for j, cls_layer in enumerate(head.cls_convs):
            if j == head.cls_down_index:
                cls_feat = F.interpolate(cls_feat, size=head.num_grids[i], mode='bilinear')
            cls_feat = cls_layer(cls_feat)
        maps.append(_solo_local_max(head.conv_cls(cls_feat)))
    return maps


@register('SOLOHead', 'SOLOV2Head', cls_maps=_solo_maps, sigmoid=True,
          attacked='the grid cells of each instance\'s centre region in the category branch '
          '(raw logits; a cell that is not the local maximum of its 2x2 neighbourhood, which '
          'SOLO\'s predict zeroes, counts as not correct)')
def _assign_solo(head, ctx):
    if type(head).__name__ == 'SOLOV2Head':
        sizes = ctx.outs[2].shape[-2:]             # SOLOv2 targets live on the mask features
    else:
        sizes = [m.shape[-2:] for m in ctx.outs[0]]    # SOLO: on the mask predictions
    res = head._get_targets_single(ctx.gt, featmap_sizes=sizes)
    return _finish(head, _level_labels(res[1]))


# -------------------------------------------------------------------- YOLOv3
def _yolo_maps(head, x):
    maps = []
    for m in head(x)[0]:      # [B, A * (5 + C), H, W]: box, objectness, classes per base prior
        b, _, h, w = m.shape
        maps.append(m.reshape(b, -1, head.num_attrib, h, w)[:, :, 5:].reshape(b, -1, h, w))
    return maps


@register('YOLOV3Head', cls_maps=_yolo_maps, sigmoid=True,
          attacked='the responsible grid cell and best anchor of each box; the class logits (the '
          'objectness is not attacked)')
def _assign_yolo(head, ctx):
    anchors = head.prior_generator.grid_priors(ctx.featmap_sizes, device=ctx.device)
    flags = head.responsible_flags(ctx.featmap_sizes, ctx.gt.bboxes, ctx.device)
    target_maps, _ = head.get_targets([anchors], [flags], [ctx.gt])
    t = torch.cat([m[0] for m in target_maps])          # [num_priors, 5 + C]
    pos = t[:, 4] > 0
    return torch.where(pos, t[:, 5:].argmax(1), torch.full_like(pos, -1, dtype=torch.long))


def cls_maps(spec: HeadSpec, head, x) -> List[Tensor]:
    """The head's class logit maps ``[B, A * C, H, W]`` per level."""
    return list(spec.cls_maps(head, x) if spec.cls_maps else head(x)[0])


def flat_logits(maps: List[Tensor], i: int, num_logits: int) -> Tensor:
    """Class logits ``[num_priors, C]`` of image ``i`` in prior order."""
    return torch.cat([m[i].permute(1, 2, 0).reshape(-1, num_logits) for m in maps])
