"""What an attack broke in a detector's output, per image, and the worst case
per image for detection.

**The error breakdown** (:func:`error_breakdown`) classifies, at a score
threshold, every ground-truth object of an image as exactly one of

- ``tp``: found, a detection of its class with IoU >= 0.5 (matched greedily
  by score, one detection per object, as VOC matches);
- ``wrong_class``: not found, but a detection of another class covers it
  (IoU >= 0.5);
- ``mislocalised``: not found, but a detection of its class overlaps it
  (``bg_iou`` <= IoU < 0.5);
- ``missed``: none of the above;

so that ``tp + wrong_class + mislocalised + missed == gt``, the count of
objects (those marked difficult / ignored are left out). Every detection
that overlaps no object (IoU < ``bg_iou`` with every box, ignored ones
included) is ``fabricated``: a box on the background. Each count is also
split by the COCO size of its box (``small`` < 32^2 pixels of area, ``medium``
< 96^2, ``large``; objects by their ground-truth box, fabrications by their
own), in the frame the metric reads (the original image).

**The detection worst case** (:class:`DetectionWorstCase`): over an
ensemble's members, each image takes the member whose adversarial image
leaves the fewest objects found (``tp`` at the score threshold, i.e. the
lowest recall); ties go to the attack's own image-wise winner, then to the
earlier member. mAP is not a sum over images (a member's fabricated boxes
and its scores' ranking count in it, not in the objects found), so, as SEA
does for mIoU, the selection is the one with the lowest headline metric
among that choice and each member on every image: the worst case's mAP is
at or below every member's by construction (``by_objects_found`` says
whether the per-image choice was kept). The wrapped metric (VOC mAP...) is
evaluated on the chosen predictions: keys ``advr_worst/mAP``,
``advr_worst/images_<member>``, and its breakdown ``advr_worst/errors/...``.
"""
from typing import Dict, List, Optional, Sequence

import numpy as np
from mmengine.evaluator import BaseMetric

__all__ = ['error_breakdown', 'sample_breakdown', 'record_errors', 'DetectionErrors',
           'DetectionWorstCase', 'KINDS', 'SIZES']

#: the ground truth's classes (they add up to ``gt``) and the background's
OBJECT_KINDS = ('tp', 'wrong_class', 'mislocalised', 'missed')
KINDS = OBJECT_KINDS + ('fabricated',)
#: COCO's object sizes: area below 32^2, below 96^2, the rest
SIZES = ('small', 'medium', 'large')
_AREA = (32 ** 2, 96 ** 2)


def _np(x, shape=None) -> np.ndarray:
    x = getattr(x, 'tensor', x)
    x = x.detach().cpu().numpy() if hasattr(x, 'detach') else np.asarray(x)
    return x.reshape(shape) if shape is not None else x


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``[len(a), len(b)]`` IoU of boxes ``x1, y1, x2, y2``."""
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)))
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(2)
    union = _area(a)[:, None] + _area(b)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def _area(boxes: np.ndarray) -> np.ndarray:
    return np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)


def _size(boxes: np.ndarray) -> np.ndarray:
    return np.digitize(_area(boxes), _AREA)   # 0 small, 1 medium, 2 large


def error_breakdown(gt_boxes, gt_labels, det_boxes, det_labels, det_scores,
                    score_thr: float = 0.3, iou_thr: float = 0.5, bg_iou: float = 0.1,
                    ignore_boxes=None) -> Dict[str, int]:
    """The counts of one image (module docstring): ``gt`` and each of
    :data:`KINDS`, and ``<kind>_<size>`` for each of :data:`SIZES`."""
    gt_boxes, gt_labels = _np(gt_boxes, (-1, 4)).astype(float), _np(gt_labels, (-1,))
    boxes, labels = _np(det_boxes, (-1, 4)).astype(float), _np(det_labels, (-1,))
    scores = _np(det_scores, (-1,)).astype(float)
    keep = scores >= score_thr
    boxes, labels, scores = boxes[keep], labels[keep], scores[keep]
    order = np.argsort(-scores, kind='stable')
    boxes, labels = boxes[order], labels[order]
    iou = _iou(boxes, gt_boxes)                                  # [D, G]
    same = labels[:, None] == gt_labels[None, :]
    found = np.zeros(len(gt_boxes), bool)
    det_tp = np.zeros(len(boxes), bool)
    for d in range(len(boxes)):           # VOC's greedy matching, by score
        cand = np.where(same[d] & ~found, iou[d], -1.0)
        if len(cand) and cand.max() >= iou_thr:
            g = int(cand.argmax())
            found[g], det_tp[d] = True, True
    kind = np.full(len(gt_boxes), 'missed', dtype=object)
    kind[found] = 'tp'
    for g in np.where(~found)[0]:
        if (iou[~same[:, g], g] >= iou_thr).any():
            kind[g] = 'wrong_class'
        elif ((iou[same[:, g], g] >= bg_iou)).any():
            kind[g] = 'mislocalised'
    all_boxes = gt_boxes if ignore_boxes is None else np.concatenate(
        [gt_boxes, _np(ignore_boxes, (-1, 4)).astype(float)])
    fabricated = _iou(boxes, all_boxes).max(1, initial=0.0) < bg_iou
    out = dict(gt=len(gt_boxes), **{k: int((kind == k).sum()) for k in OBJECT_KINDS},
               fabricated=int(fabricated.sum()))
    gsize, dsize = _size(gt_boxes), _size(boxes)
    for s, name in enumerate(SIZES):
        out[f'gt_{name}'] = int((gsize == s).sum())
        for k in OBJECT_KINDS:
            out[f'{k}_{name}'] = int(((kind == k) & (gsize == s)).sum())
        out[f'fabricated_{name}'] = int((fabricated & (dsize == s)).sum())
    return out


def sample_breakdown(sample, score_thr: float = 0.3) -> Optional[Dict[str, int]]:
    """:func:`error_breakdown` of a data sample (a dict, or a data element,
    with ``gt_instances``, ``pred_instances`` and, where the dataset marks
    some, ``ignored_instances``); None for a sample without boxes
    (segmentation)."""
    gt, pred = sample.get('gt_instances'), sample.get('pred_instances')
    if gt is None or pred is None or 'bboxes' not in pred or 'bboxes' not in gt:
        return None
    ignored = sample.get('ignored_instances')
    ignore = ignored.get('bboxes') if ignored is not None else None
    return error_breakdown(gt.get('bboxes'), gt.get('labels'), pred.get('bboxes'),
                           pred.get('labels'), pred.get('scores'), score_thr,
                           ignore_boxes=ignore)


def record_errors(sample, variants: dict, score_thr: float = 0.3) -> Optional[dict]:
    """An image's record of what each attack broke: ``gt`` and, per variant
    (the loop's ``advr`` from ``sample``, and ``orig`` and the members'
    ``advr[...]`` from ``variants``, ``{variant: prediction fields}``; not
    the other epsilons of a sweep), the count of each of :data:`KINDS`.
    None for a segmentor."""
    from mmdag.contract import variant_parts
    base = dict(gt_instances=sample.get('gt_instances'),
                ignored_instances=sample.get('ignored_instances'))
    advr = sample_breakdown(dict(base, pred_instances=sample.get('pred_instances')), score_thr)
    if advr is None:
        return None
    rows = {'advr': advr}
    for v, preds in (variants or {}).items():
        kind, member, eps = variant_parts(v)
        if eps is None and (v == 'orig' or (kind == 'advr' and member)):
            row = sample_breakdown(dict(base, **preds), score_thr)
            if row is not None:
                rows[v] = row
    return dict(gt=advr['gt'], **{v: {k: r[k] for k in KINDS} for v, r in rows.items()})


def _total(rows: List[Dict[str, int]]) -> Dict[str, int]:
    out: Dict[str, int] = {}
    for row in rows:
        for k, v in row.items():
            out[k] = out.get(k, 0) + v
    return out


class DetectionErrors(BaseMetric):
    """The error breakdown of some variants, summed over the images: keys
    ``errors/<variant>/<kind>`` (``errors/gt``: the objects), and with
    ``sizes`` ``errors/<variant>/<kind>_<size>``. A part of
    :class:`~mmdag.evaluation.DAGMetric`, which feeds it (per image, the
    breakdown of each variant); nothing for segmentation.

    Args:
        variants (Sequence[str]): the variants broken down.
        sizes (Sequence[str]): the variants also split by object size.
        score_thr (float): the detections counted. Defaults to 0.3.
    """

    def __init__(self, variants: Sequence[str], sizes: Sequence[str] = (),
                 score_thr: float = 0.3, collect_device: str = 'cpu',
                 prefix: str = 'errors') -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.variants, self.sizes, self.score_thr = list(variants), set(sizes), float(score_thr)

    def add(self, per_variant: Dict[str, List[Optional[dict]]]) -> None:
        """One batch: ``per_variant[v][i]``, image i's breakdown of variant v."""
        n = len(next(iter(per_variant.values()), []))
        for i in range(n):
            self.results.append({v: per_variant[v][i] for v in self.variants})

    def process(self, data_batch, data_samples) -> None:   # fed by DAGMetric.process
        pass

    def compute_metrics(self, results: list) -> dict:
        if not results or any(r[v] is None for r in results for v in self.variants):
            return {}
        out = {'score_thr': self.score_thr}
        for v in self.variants:
            tot = _total([r[v] for r in results])
            out['gt'] = tot['gt']   # the same objects in every variant
            out.update({f'gt_{s}': tot[f'gt_{s}'] for s in SIZES})
            out.update({f'{v}/{k}': tot[k] for k in KINDS})
            if v in self.sizes:
                out.update({f'{v}/{k}_{s}': tot[f'{k}_{s}'] for k in KINDS for s in SIZES})
        return out


class DetectionWorstCase(BaseMetric):
    """The detection worst case of an ensemble's members (module docstring),
    evaluated with the wrapped metric; its breakdown goes in ``errors``.

    Its mAP is at or below every member's: the selection is the lowest among
    the per-image choice by objects found and each member on every image.
    :class:`~mmdag.evaluation.DAGMetric` reports its figures as ADVR's
    headline (``advr/mAP``); the attack's own per-image winners, what the
    test loop predicted, go to ``advr_winner/...``.

    Args:
        names (Sequence[str]): the members' names.
        evaluator (BaseMetric): the wrapped metric whose ``compute_metrics``
            evaluates the chosen members' per-image results.
        prefix (str): the keys' prefix (``advr_worst``).
    """

    def __init__(self, names: Sequence[str], evaluator: BaseMetric, prefix: str,
                 collect_device: str = 'cpu') -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.names, self.evaluator = list(names), evaluator

    def add(self, member_results: List[list], breakdowns: List[list],
            winners: List[Optional[str]]) -> None:
        """One batch: member k's wrapped result ``member_results[k][i]`` and
        breakdown ``breakdowns[k][i]`` on image i; the attack's winners."""
        for i, winner in enumerate(winners):
            rows = [b[i] for b in breakdowns]
            if any(r is None for r in rows):   # not a detector: nothing to choose
                self.results.append(dict(members=None, rows=None, breakdown=None, choice=None))
                continue
            first = self.names.index(winner) if winner in self.names else 0
            order = [first] + [k for k in range(len(rows)) if k != first]
            choice = min(order, key=lambda k: rows[k]['tp'])
            self.results.append(dict(members=[r[i] for r in member_results], rows=rows,
                                     breakdown=rows[choice], choice=choice))

    def process(self, data_batch, data_samples) -> None:   # fed by DAGMetric.process
        pass

    def compute_metrics(self, results: list) -> dict:
        if not results or any(r['breakdown'] is None for r in results):
            return {}
        found = [r['choice'] for r in results]
        candidates = [found] + [[k] * len(results) for k in range(len(self.names))]
        best = None
        for choice in candidates:
            out = self.evaluator.compute_metrics(
                [r['members'][k] for r, k in zip(results, choice)])
            key = headline(out)
            value = float(out[key]) if key is not None else 0.0
            if best is None or value < best[0]:
                best = (value, choice, out)
        _, choice, out = best
        out = dict(out)
        out.update({f'images_{n}': sum(c == j for c in choice) for j, n in enumerate(self.names)})
        out['by_objects_found'] = int(choice is found)
        tot = _total([r['rows'][k] for r, k in zip(results, choice)])
        out.update({f'errors/{k}': tot[k] for k in KINDS})
        out.update({f'errors/{k}_{s}': tot[f'{k}_{s}'] for k in KINDS for s in SIZES})
        return out


def headline(metrics: dict) -> Optional[str]:
    """The headline key of a detection metric's output (``mAP``,
    ``bbox_mAP``...; the first key otherwise)."""
    for key in metrics:
        if key == 'mAP' or key.endswith('_mAP') or key.endswith('/mAP'):
            return key
    return next(iter(metrics), None)
