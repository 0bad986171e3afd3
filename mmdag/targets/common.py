"""What the target adapters share: the model's features through its own
data preprocessor, the ground truth in the network-input frame, and the
sigmoid heads' rule of "still correct"."""
import math
from typing import Optional, Sequence

import torch
from torch import Tensor


def features(model, images: Sequence[Tensor], samples: list):
    """Backbone (+ neck) features of images that share one canvas."""
    data = model.data_preprocessor(dict(inputs=list(images), data_samples=samples), False)
    metas = [s.metainfo for s in data['data_samples']]
    return model.extract_feat(data['inputs']), metas


def gt_in_input_frame(sample, gt_frame: str, device, meta: Optional[dict] = None,
                      masks: bool = False):
    """The sample's ground-truth boxes and labels in the network-input frame.

    The mmdet zoo test pipelines load annotations after ``Resize`` (boxes in
    the original image); ``gt_frame='original'`` scales them by
    ``scale_factor``, ``'input'`` takes them as they are. None when the
    sample has no ``gt_instances``. With ``masks=True`` (heads whose targets
    are defined on instance masks, e.g. SOLO) the instances also get
    ``masks`` (``BitmapMasks``) on the padded input canvas of ``meta``: the
    sample's own masks brought to the input frame, or the filled boxes where
    it has none.
    """
    from mmengine.structures import InstanceData
    gt = sample.get('gt_instances')
    if gt is None or 'bboxes' not in gt:
        return None
    boxes = getattr(gt.bboxes, 'tensor', gt.bboxes).to(device).float().reshape(-1, 4)
    sf = sample.metainfo.get('scale_factor', (1.0, 1.0))
    if gt_frame == 'original' and len(boxes):
        boxes = boxes * boxes.new_tensor([sf[0], sf[1], sf[0], sf[1]])
    out = InstanceData(bboxes=boxes, labels=gt.labels.to(device).long())
    if masks:
        out.masks = _input_frame_masks(gt, boxes, gt_frame, (meta or sample.metainfo))
    return out


def _input_frame_masks(gt, boxes: Tensor, gt_frame: str, meta: dict):
    import numpy as np
    from mmdet.structures.mask import BitmapMasks
    h, w = meta.get('batch_input_shape', meta.get('pad_shape', meta['img_shape']))[:2]
    if 'masks' in gt and len(gt.masks) == len(boxes):
        m = gt.masks
        if gt_frame == 'original':
            ih, iw = meta['img_shape'][:2]
            m = m.resize((ih, iw))
        data = m.to_ndarray().astype(np.uint8)
        full = np.zeros((len(boxes), h, w), np.uint8)
        mh, mw = min(h, data.shape[1]), min(w, data.shape[2])
        full[:, :mh, :mw] = data[:, :mh, :mw]
        return BitmapMasks(full, h, w)
    full = np.zeros((len(boxes), h, w), np.uint8)
    for k, (x1, y1, x2, y2) in enumerate(boxes.round().long().tolist()):
        full[k, max(y1, 0):max(y2, 0), max(x1, 0):max(x2, 0)] = 1
    return BitmapMasks(full, h, w)


def score_logit(score_thr: float) -> float:
    """The logit of a sigmoid score threshold (kept inside (1e-6, 1 - 1e-6))."""
    t = min(max(score_thr, 1e-6), 1 - 1e-6)
    return math.log(t / (1 - t))


def above_threshold(logits: Tensor, labels: Tensor, threshold: float) -> Tensor:
    """The sigmoid heads' "still correct": the true class's logit above
    ``threshold`` (its score above the detector's score threshold)."""
    if logits.numel() == 0:
        return torch.zeros(labels.shape, dtype=torch.bool, device=labels.device)
    return logits.gather(1, labels[:, None])[:, 0] > threshold
