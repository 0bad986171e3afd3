"""Per-head target code for the MMDetection dense heads whose class maps are
read by hand: the heatmap heads (CenterNet, CenterNet-update, CornerNet /
CentripetalNet), SOLO's instance segmentation heads and YOLOv3.

Their specs go into the registry of :mod:`mmdag.targets.head_specs` when
this module is imported (which :mod:`mmdag.targets.dense_heads` does).
"""
import torch
import torch.nn.functional as F
from torch import Tensor

from .head_specs import finish, level_labels, register


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
    return torch.cat([_heatmap_peaks(t['topleft_heatmap']),
                      _heatmap_peaks(t['bottomright_heatmap'])])


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
    return finish(head, level_labels(res[1]))


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
