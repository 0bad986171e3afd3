"""Pixels of an MMSegmentation ``EncoderDecoder`` as DAG targets."""
from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from mmdag.attacks import TargetSet
from mmdag.registry import TARGETS
from .batching import map_canvas_groups


def _seg_logit_maps(model, images: Sequence[Tensor], samples: list) -> List[Tensor]:
    """Per-image logits ``[C, H_ori, W_ori]`` through the model's own path,
    one forward per image size (:mod:`mmdag.targets.batching`).

    The same steps as mmseg's ``EncoderDecoder.predict``: the data
    preprocessor (BGR->RGB, normalisation, padding; all differentiable),
    ``inference`` (``test_cfg.mode`` 'whole' or 'slide'), then the geometry of
    ``postprocess_result`` (padding removed, flip undone, bilinear resize to
    the original shape), so "correct" here is what the metric counts.
    """
    return map_canvas_groups(model, images, lambda group: _seg_logit_maps_one_canvas(
        model, [images[k] for k in group], [samples[k] for k in group]))


def _seg_logit_maps_one_canvas(model, images: Sequence[Tensor], samples: list) -> List[Tensor]:
    data = model.data_preprocessor(dict(inputs=list(images), data_samples=samples), False)
    metas = [s.metainfo for s in data['data_samples']]
    scores = mask_classification(model)
    seg = model.inference(data['inputs'], metas)
    _, _, h, w = seg.shape
    # per-image views whose backward needs no zero-filled batch-size buffer
    # (unbind, not slicing), and no op where it is the identity (no padding,
    # no flip, the network input already at the original size)
    rows = seg.unbind(0) if len(metas) > 1 else (seg.squeeze(0), )
    out = []
    for z, meta in zip(rows, metas):
        pad = meta.get('img_padding_size', meta.get('padding_size', [0] * 4))
        left, right, top, bottom = pad
        if left or right or top or bottom:
            z = z[:, top:h - bottom, left:w - right]
        if meta.get('flip', False):
            z = z.flip(dims=(2, ) if meta.get('flip_direction') == 'horizontal' else (1, ))
        ori = tuple(meta['ori_shape'][:2])
        if tuple(z.shape[-2:]) != ori:
            z = F.interpolate(z.unsqueeze(0), size=ori, mode='bilinear',
                              align_corners=model.align_corners).squeeze(0)
        if scores:
            z = z.clamp_min(SCORE_FLOOR).log()
        out.append(z)
    return out


#: the smallest class score whose log is taken (mask-classification heads)
SCORE_FLOOR = 1e-12


def mask_classification(model) -> bool:
    """Whether the decode head outputs class scores, not logits: MaskFormer and
    Mask2Former score a class at a pixel by ``sum_q softmax(cls_q)[c] *
    sigmoid(mask_q)``: non-negative scores (not logits) whose argmax is what
    IoUMetric counts. DAG attacks their log, a logit-like scale with the same
    argmax (Eq. (1) then pushes ratios of scores, as it pushes differences of
    logits)."""
    head = model.decode_head
    head = head[-1] if isinstance(head, torch.nn.ModuleList) else head
    return type(head).__name__ in ('MaskFormerHead', 'Mask2FormerHead')


@TARGETS.register_module()
class SegmentationTargets(TargetSet):
    """Every pixel with a valid ground-truth label is a target.

    Works for any mmseg ``EncoderDecoder`` (``CascadeEncoderDecoder``
    included; MaskFormer and Mask2Former attacked on the log of their class
    scores, see :func:`mask_classification`). Logits are taken in the frame the metric uses (the original
    image), so "still correct" is exactly what IoUMetric will count. Pixels
    labelled ``ignore_index`` (or outside ``[0, C)``) are skipped. Where a
    sample has no ground truth, the clean prediction is the true label.

    Args:
        model: the segmentor (unwrapped, in eval mode).
        inputs (list[Tensor]): clean images ``[3, H, W]`` (0..255).
        data_samples (list[SegDataSample]): their samples (metainfo, gt).
        use_gt (bool): take labels from ``gt_sem_seg`` when present.
            Defaults to True.
    """

    @staticmethod
    def accepts(model) -> bool:
        from mmseg.models.segmentors import EncoderDecoder
        return isinstance(model, EncoderDecoder)

    family = 'MMSegmentation EncoderDecoder / CascadeEncoderDecoder'

    def __init__(self, model, inputs: Sequence[Tensor], data_samples: list,
                 use_gt: bool = True) -> None:
        self.model = model
        self.samples = list(data_samples)
        self.settings = dict(use_gt=use_gt)
        head = model.decode_head
        head = head[-1] if isinstance(head, torch.nn.ModuleList) else head  # cascade: last stage
        num_classes = model.out_channels
        if num_classes < 2:
            raise ValueError('DAG needs a multi-class head (out_channels >= 2); this segmentor '
                             'has a single sigmoid output, which has no wrong label to push up.')
        ignore = getattr(head, 'ignore_index', 255)
        device = next(model.parameters()).device
        labels, self.index = [], []
        clean: Optional[List[Tensor]] = None
        for i, sample in enumerate(self.samples):
            gt = sample.get('gt_sem_seg') if use_gt else None
            if gt is None:
                if clean is None:
                    with torch.no_grad():
                        clean = _seg_logit_maps(model, [x.float() for x in inputs], self.samples)
                lab = clean[i].argmax(0).flatten()
                valid = torch.ones_like(lab, dtype=torch.bool)
            else:
                lab = gt.data.flatten().long()
                ori = tuple(sample.metainfo['ori_shape'])
                if tuple(gt.data.shape[-2:]) != ori:
                    raise ValueError(f'gt_sem_seg has shape {tuple(gt.data.shape[-2:])} but ori_shape '
                                     f'is {ori}: load annotations after Resize in the test pipeline, '
                                     'as the mmseg zoo configs do.')
                valid = (lab != ignore) & (lab >= 0) & (lab < num_classes)
            self.index.append(valid.nonzero().squeeze(1).to(device))
            labels.append(lab[valid].to(device))
        super().__init__(labels, num_classes)

    def logits(self, images: Sequence[Tensor], indices: Sequence[int]) -> List[Tensor]:
        maps = _seg_logit_maps(self.model, images, [self.samples[i] for i in indices])
        # rows of the [H*W, C] view: contiguous [N, C] logits (the per-target
        # argmax and gathers of the DAG loop run 2x faster than on a transposed
        # view); every pixel a target: no index (its backward zero-fills)
        out = []
        for m, i in zip(maps, indices):
            z = m.flatten(1).T
            idx = self.index[i]
            out.append(z.contiguous() if len(idx) == len(z) else z.index_select(0, idx))
        return out
