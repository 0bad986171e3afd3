"""TIDE's error breakdown of a detector (Bolya et al., "TIDE: A General
Toolbox for Identifying Object Detection Errors", ECCV 2020), computed as the
authors' package ``tidecv`` (1.0.1) computes it, on boxes.

**What it says.** At a foreground IoU ``pos_thr`` (0.5) each detection, in
score order per image (the ``max_dets`` highest, 100 as in ``tidecv``), takes
the unmatched ground-truth object of its class it overlaps most, if by at
least ``pos_thr``: a true positive. Every other detection is one error, the
first of

- ``loc``: localisation, its class's best object overlaps it by
  ``bg_thr <= IoU <= pos_thr`` (0.1, TIDE's background threshold);
- ``cls``: classification, an object of another class overlaps it by at
  least ``pos_thr``;
- ``dupe``: duplicate, an object of its class already matched overlaps it by
  at least ``pos_thr``;
- ``bkg``: background, no object overlaps it by more than ``bg_thr``;
- ``both``: the rest (wrong class and badly localised);

and an unmatched object that no ``cls`` or ``loc`` error could have found is
``miss``. The AP (``AP``: the mean over classes of each class's AP at
``pos_thr`` over all images, COCO's 101-point interpolation of the smoothed
precision-recall curve, times 100) is then recomputed with each error type
fixed: a ``cls`` or ``loc`` error becomes a true positive of the object's
(``cls``) or its own (``loc``) class when it is the highest-scored error on
an object not matched, and is removed otherwise; ``dupe``, ``bkg`` and
``both`` errors are removed; a ``miss`` object leaves the count of objects.
The gain is ``dAP/<type>`` (never below 0, as TIDE clips it). TIDE's two
special errors come along: ``dAP/fp``, the AP with every false positive
scored below every true positive, and ``dAP/fn``, with the unmatched objects
out of the count (not clipped, as in TIDE).

TIDE's own rules kept here, which differ from COCO's and VOC's evaluation:
a class with detections but no object counts with AP 0 in the mean (it
leaves the mean only when a fix removes all its detections); a detection
covered by an ignored region (``ignore_boxes``: intersection over the
detection's area above ``pos_thr``, of its class or of any class when
``ignore_labels`` is not given) leaves the AP but is still classified as an
error and counted; every detection is counted, with no score threshold.
Detections with equal scores keep their order within an image and the
images' order, as in TIDE's AP; when TIDE recomputes the AP with an error
type fixed it lists the errors before the true positives, so with tied
scores a ``dAP`` may differ from TIDE's (not with distinct scores).

**Why our own code and not ``tidecv``'s.** ``tidecv`` needs pandas, seaborn
and opencv at import (for its plots), has not been released since 2020,
holds every box in a Python dict and prints its tables. This module is the
same arithmetic in numpy: IoUs from pycocotools (which mmdet already
requires, and which ``tidecv`` calls), so they are the same numbers, and
the tests check every figure against ``tidecv`` itself on the same
detections.

Use: :func:`tide_image` per image (a small dict of arrays, which can be
kept, gathered across ranks and saved with a run's state), then
:func:`tide_summary` over the images; :func:`tide_breakdown` does both.
"""
from typing import Dict, Optional, Sequence

import numpy as np
from pycocotools import mask as mask_utils

__all__ = ['tide_image', 'sample_tide', 'tide_summary', 'tide_breakdown', 'ERRORS',
           'SPECIAL_ERRORS',
           'TIDE_NAMES', 'POS_THR', 'BG_THR', 'MAX_DETS']

#: TIDE's six error types, in its order: classification, localisation,
#: both, duplicate, background, missed
ERRORS = ('cls', 'loc', 'both', 'dupe', 'bkg', 'miss')
#: TIDE's special errors: all false positives, all false negatives
SPECIAL_ERRORS = ('fp', 'fn')
#: TIDE's names of each (its ``short_name``)
TIDE_NAMES = dict(cls='Cls', loc='Loc', both='Both', dupe='Dupe', bkg='Bkg', miss='Miss',
                  fp='FalsePos', fn='FalseNeg')
#: TIDE's foreground and background IoU thresholds, and detections per image
POS_THR, BG_THR, MAX_DETS = 0.5, 0.1, 100

# a detection's state, and its error (an index in ERRORS; -1: none)
_TP, _FP, _IGNORED = 1, 0, -1
_CLS, _LOC, _BOTH, _DUPE, _BKG = range(5)
_RECALLS = np.arange(101) / 100   # COCO's 101 recall points, 0.00 .. 1.00


def as_array(x, shape, dtype, name: str, owner: str = 'TIDE') -> np.ndarray:
    """``x`` (a tensor, boxes with ``.tensor``, or array-like) as a numpy
    array of ``shape`` (its first dimension free) and ``dtype``; a bad shape
    raises a ValueError naming ``owner`` and ``name``."""
    x = getattr(x, 'tensor', x)
    x = x.detach().cpu().numpy() if hasattr(x, 'detach') else np.asarray(x)
    if x.size == 0:
        return np.zeros((0,) + shape[1:], dtype)
    try:
        return x.reshape(shape).astype(dtype)
    except ValueError:
        raise ValueError(f'{owner}: {name} has shape {x.shape}, expected {shape}') from None


def _xywh(boxes: np.ndarray) -> np.ndarray:
    """COCO's ``x, y, w, h`` of boxes ``x1, y1, x2, y2``."""
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)


def _iou(dets: np.ndarray, boxes: np.ndarray, crowd: bool = False) -> np.ndarray:
    """``[len(dets), len(boxes)]`` IoU (``crowd``: intersection over the
    detection's area), by pycocotools as ``tidecv`` computes it."""
    if not len(dets) or not len(boxes):
        return np.zeros((len(dets), len(boxes)))
    iou = mask_utils.iou(_xywh(dets), _xywh(boxes), [int(crowd)] * len(boxes))
    return np.asarray(iou, dtype=np.float64).reshape(len(dets), len(boxes))


def tide_image(gt_boxes, gt_labels, det_boxes, det_labels, det_scores, ignore_boxes=None,
               ignore_labels=None, pos_thr: float = POS_THR, bg_thr: float = BG_THR,
               max_dets: Optional[int] = MAX_DETS) -> Dict[str, np.ndarray]:
    """TIDE's matching and errors on one image (module docstring).

    Args:
        gt_boxes (array-like): the objects' boxes ``[G, 4]``, ``x1, y1, x2,
            y2`` in pixels (numpy, a tensor or mmdet's boxes).
        gt_labels (array-like): their classes ``[G]``.
        det_boxes (array-like): the detections' boxes ``[D, 4]``.
        det_labels (array-like): their classes ``[D]``.
        det_scores (array-like): their scores ``[D]``.
        ignore_boxes (array-like, optional): regions whose detections leave
            the AP ``[K, 4]`` (e.g. VOC's difficult objects). Defaults to None.
        ignore_labels (array-like, optional): the regions' classes ``[K]``;
            None: each region ignores every class. Defaults to None.
        pos_thr (float): the foreground IoU. Defaults to 0.5.
        bg_thr (float): the background IoU. Defaults to 0.1.
        max_dets (int, optional): the highest-scored detections kept; None
            keeps all. Defaults to 100.

    Returns:
        dict: arrays over the kept detections in score order, ``det_labels``,
        ``det_scores``, ``det_state`` (1 true positive, 0 false positive, -1
        ignored), ``det_error`` (an index in :data:`ERRORS`, -1 for none)
        and ``det_fix`` (for a ``cls``/``loc`` error, the class of the true
        positive it becomes when fixed; -1: removed), and over the objects
        (ignored regions excluded), ``gt_labels``, ``gt_matched`` and
        ``gt_missed`` (a ``miss`` error).
    """
    if not 0 <= bg_thr <= pos_thr <= 1:
        raise ValueError(f'TIDE: needs 0 <= bg_thr <= pos_thr <= 1, got bg_thr {bg_thr}, '
                         f'pos_thr {pos_thr}')
    if max_dets is not None and int(max_dets) < 1:
        raise ValueError(f'TIDE: max_dets must be a positive count or None, got {max_dets}')
    gt_boxes = as_array(gt_boxes, (-1, 4), np.float64, 'gt_boxes')
    gt_labels = as_array(gt_labels, (-1,), np.int64, 'gt_labels')
    boxes = as_array(det_boxes, (-1, 4), np.float64, 'det_boxes')
    labels = as_array(det_labels, (-1,), np.int64, 'det_labels')
    scores = as_array(det_scores, (-1,), np.float64, 'det_scores')
    if len(gt_boxes) != len(gt_labels):
        raise ValueError(f'TIDE: {len(gt_boxes)} gt_boxes but {len(gt_labels)} gt_labels')
    if not len(boxes) == len(labels) == len(scores):
        raise ValueError(f'TIDE: {len(boxes)} det_boxes, {len(labels)} det_labels and '
                         f'{len(scores)} det_scores: one each per detection')
    if not (np.isfinite(scores).all() and np.isfinite(boxes).all()
            and np.isfinite(gt_boxes).all()):
        raise ValueError('TIDE: a box or score is not finite (NaN or inf)')
    ign_boxes = as_array(ignore_boxes if ignore_boxes is not None else np.zeros((0, 4)),
                         (-1, 4), np.float64, 'ignore_boxes')
    ign_labels = (np.full(len(ign_boxes), -1, np.int64) if ignore_labels is None else
                  as_array(ignore_labels, (-1,), np.int64, 'ignore_labels'))
    if len(ign_labels) != len(ign_boxes):
        raise ValueError(f'TIDE: {len(ign_boxes)} ignore_boxes but {len(ign_labels)} '
                         'ignore_labels')

    order = np.argsort(-scores, kind='stable')[:max_dets]
    boxes, labels, scores = boxes[order], labels[order], scores[order]
    n, g = len(boxes), len(gt_boxes)
    state = np.full(n, _FP, np.int8)
    matched = np.zeros(g, bool)
    iou = _iou(boxes, gt_boxes)                                   # [D, G]
    same = labels[:, None] == gt_labels[None, :]
    cls_iou = iou * same
    # matching: by score, the best unmatched object of the class
    buffer = cls_iou.copy()
    for d in np.flatnonzero(cls_iou.max(1, initial=0.0) >= pos_thr):
        j = int(buffer[d].argmax())
        if buffer[d, j] >= pos_thr:
            state[d], matched[j] = _TP, True
            buffer[:, j] = 0.0
    # ignored regions: unmatched detections inside one leave the AP
    if len(ign_boxes) and n:
        inside = _iou(boxes, ign_boxes, crowd=True) > pos_thr      # [D, K]
        inside &= (ign_labels[None, :] == labels[:, None]) | (ign_labels[None, :] == -1)
        state[(state != _TP) & inside.any(1)] = _IGNORED
    # the errors, in TIDE's order of tests
    error = np.full(n, -1, np.int8)
    target = np.full(n, -1, np.int64)
    wrong = state != _TP
    if g == 0:
        error[wrong] = _BKG
    elif n:
        rows = np.arange(n)
        best_cls = cls_iou.argmax(1)
        other_iou = iou * ~same
        best_other = other_iou.argmax(1)
        used_iou = iou * matched[None, :] * same
        loc = wrong & (bg_thr <= cls_iou[rows, best_cls]) & (cls_iou[rows, best_cls] <= pos_thr)
        left = wrong & ~loc
        cls = left & (other_iou[rows, best_other] >= pos_thr)
        left &= ~cls
        dupe = left & (used_iou.max(1) >= pos_thr)
        left &= ~dupe
        bkg = left & (iou.max(1) <= bg_thr)
        error[loc], error[cls], error[dupe], error[bkg] = _LOC, _CLS, _DUPE, _BKG
        error[left & ~bkg] = _BOTH
        target[loc], target[cls] = best_cls[loc], best_other[cls]
    # a cls / loc error on an unmatched object: the highest-scored such
    # error on each object is the one a fix turns into a true positive
    fix = np.full(n, -1, np.int64)
    fixable = target >= 0
    fixable[fixable] = ~matched[target[fixable]]
    usable = np.zeros(g, bool)
    usable[target[fixable]] = True
    _, first = np.unique(target[fixable], return_index=True)
    best = np.flatnonzero(fixable)[first]
    fix[best] = np.where(error[best] == _CLS, gt_labels[target[best]], labels[best])
    return dict(det_labels=labels, det_scores=scores, det_state=state, det_error=error,
                det_fix=fix, gt_labels=gt_labels, gt_matched=matched,
                gt_missed=~matched & ~usable)


def sample_tide(sample, **kwargs) -> Optional[Dict[str, np.ndarray]]:
    """:func:`tide_image` of a data sample (a dict or a data element with
    ``gt_instances``, ``pred_instances`` and, where the data set marks some,
    ``ignored_instances``, as mmdet's detection metrics read them); None for
    a sample without boxes (segmentation).

    Args:
        sample (dict | DetDataSample): the image's ground truth and
            predictions, in the same frame.
        **kwargs: ``pos_thr``, ``bg_thr``, ``max_dets`` of :func:`tide_image`.

    Returns:
        dict | None: :func:`tide_image`'s record.
    """
    gt, pred = sample.get('gt_instances'), sample.get('pred_instances')
    if gt is None or pred is None or 'bboxes' not in pred or 'bboxes' not in gt:
        return None
    ignored = sample.get('ignored_instances')
    has_ignored = ignored is not None and 'bboxes' in ignored
    return tide_image(gt.get('bboxes'), gt.get('labels'), pred.get('bboxes'),
                      pred.get('labels'), pred.get('scores'),
                      ignored.get('bboxes') if has_ignored else None,
                      ignored.get('labels') if has_ignored else None, **kwargs)


def _ap(scores: np.ndarray, tp: np.ndarray, npos: int) -> float:
    """One class's AP as ``tidecv`` computes it: the precision-recall curve
    in score order, each precision raised to the best at a higher recall,
    read at COCO's 101 recalls (the first point at or above each; 0 past
    the last), averaged, times 100."""
    if npos == 0:
        return 0.0
    tp = tp[np.argsort(-scores, kind='stable')]
    hits = np.cumsum(tp)
    precision = hits / np.arange(1, len(tp) + 1)
    recall = hits / npos
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    at = np.searchsorted(recall, _RECALLS, side='left')
    curve = np.where(at < len(tp), precision[np.minimum(at, len(tp) - 1)], 0.0) \
        if len(tp) else np.zeros(len(_RECALLS))
    return sum(curve.tolist()) / len(_RECALLS) * 100


def _map(labels: np.ndarray, scores: np.ndarray, tp: np.ndarray, npos: Dict[int, int]) -> float:
    """The mean AP over the classes with a detection or a nonzero count of
    objects (TIDE's ``get_mAP``); 0 when there is none."""
    classes = sorted(set(labels.tolist()) | {c for c, k in npos.items() if k != 0})
    if not classes:
        return 0.0
    aps = [_ap(scores[labels == c], tp[labels == c], npos.get(c, 0)) for c in classes]
    return sum(aps) / len(aps)


def tide_summary(images: Sequence[Dict[str, np.ndarray]]) -> Dict[str, float]:
    """TIDE's AP and errors over a data set (module docstring).

    Args:
        images (Sequence[dict]): :func:`tide_image` of each image.

    Returns:
        dict: ``AP``; ``dAP/<type>`` for each of :data:`ERRORS` and
        :data:`SPECIAL_ERRORS` (AP points, 0..100 scale); ``count/<type>``,
        the errors of each of :data:`ERRORS` (detections, ``miss``: objects);
        ``count/tp``, the true positives; ``count/gt``, the objects.
    """
    def cat(key, dtype):
        return np.concatenate([np.asarray(r[key], dtype) for r in images]) if images \
            else np.zeros(0, dtype)

    labels, scores = cat('det_labels', np.int64), cat('det_scores', np.float64)
    state, error = cat('det_state', np.int8), cat('det_error', np.int8)
    fix, gt_labels = cat('det_fix', np.int64), cat('gt_labels', np.int64)
    matched, missed = cat('gt_matched', bool), cat('gt_missed', bool)

    def counts(gt_kept):
        values, k = np.unique(gt_labels[gt_kept], return_counts=True)
        return dict(zip(values.tolist(), k.tolist()))

    npos = counts(np.ones(len(gt_labels), bool))
    scored = state != _IGNORED
    tp = state == _TP
    ap = _map(labels[scored], scores[scored], tp[scored], npos)
    out = {'AP': ap}
    for k, name in enumerate(ERRORS):
        if name == 'miss':
            lost = counts(missed)
            fixed = _map(labels[scored], scores[scored], tp[scored],
                         {c: v - lost.get(c, 0) for c, v in npos.items()})
        else:
            keep = scored & (error != k)
            turned = (error == k) & (fix >= 0)
            fixed = _map(np.concatenate([labels[keep], fix[turned]]),
                         np.concatenate([scores[keep], scores[turned]]),
                         np.concatenate([tp[keep], np.ones(turned.sum(), bool)]), npos)
        out[f'dAP/{name}'] = max(fixed - ap, 0.0)
    out['dAP/fp'] = _map(labels[scored], tp[scored].astype(np.float64), tp[scored], npos) - ap
    out['dAP/fn'] = _map(labels[scored], scores[scored], tp[scored], counts(matched)) - ap
    for k, name in enumerate(ERRORS[:-1]):
        out[f'count/{name}'] = int((error == k).sum())
    out['count/miss'] = int(missed.sum())
    out['count/tp'] = int(tp.sum())
    out['count/gt'] = int(len(gt_labels))
    return out


def tide_breakdown(gt_boxes: Sequence, gt_labels: Sequence, det_boxes: Sequence,
                   det_labels: Sequence, det_scores: Sequence,
                   ignore_boxes: Optional[Sequence] = None,
                   ignore_labels: Optional[Sequence] = None, **kwargs) -> Dict[str, float]:
    """TIDE's AP and errors of a data set given per image: each argument is
    a list with one entry per image, the entry as :func:`tide_image` takes
    it (``ignore_*``: None, or a list whose entries may be None).

    Args:
        gt_boxes (Sequence): per image, the objects' boxes ``[G, 4]``.
        gt_labels (Sequence): per image, their classes ``[G]``.
        det_boxes (Sequence): per image, the detections' boxes ``[D, 4]``.
        det_labels (Sequence): per image, their classes ``[D]``.
        det_scores (Sequence): per image, their scores ``[D]``.
        ignore_boxes (Sequence, optional): per image, the ignored regions.
            Defaults to None.
        ignore_labels (Sequence, optional): per image, their classes.
            Defaults to None.
        **kwargs: ``pos_thr``, ``bg_thr``, ``max_dets`` of :func:`tide_image`.

    Returns:
        dict: :func:`tide_summary`'s.
    """
    n = len(gt_boxes)
    lists = dict(gt_labels=gt_labels, det_boxes=det_boxes, det_labels=det_labels,
                 det_scores=det_scores, ignore_boxes=ignore_boxes, ignore_labels=ignore_labels)
    for name, value in lists.items():
        if value is not None and len(value) != n:
            raise ValueError(f'TIDE: {name} has {len(value)} images, gt_boxes {n}')
    ignore_boxes = ignore_boxes if ignore_boxes is not None else [None] * n
    ignore_labels = ignore_labels if ignore_labels is not None else [None] * n
    return tide_summary([tide_image(*args, **kwargs) for args in zip(
        gt_boxes, gt_labels, det_boxes, det_labels, det_scores, ignore_boxes, ignore_labels)])
