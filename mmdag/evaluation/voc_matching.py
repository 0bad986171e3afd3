"""What an attack broke in a detector's output, per image, with detections
matched to objects as PASCAL VOC matches them (mmdet's ``tpfp_default``,
which its VOC mAP uses).

**The matching** (:func:`voc_match`), per class: detections in score order;
each takes the object of its class it overlaps most (IoU by mmdet's
``bbox_overlaps``, the same float32 arithmetic as the mAP), ignored objects
(VOC's difficult ones) included; at IoU >= ``iou_thr`` it is a true positive
if that object is a real one not yet taken, a false positive (a duplicate)
if another detection took it, and neither if the object is ignored; below
``iou_thr`` it is a false positive. Unlike ImageNet's rule
(``tpfp_imagenet``), a detection whose best object is taken does not go on
to the next one.

**The breakdown** (:func:`voc_error_breakdown`, the signature and output of
:func:`~mmdag.evaluation.det_errors.error_breakdown`): at a score
threshold, every object of an image (ignored ones left out) is exactly one
of

- ``tp``: found, a true positive of the matching;
- ``wrong_class``: not found, but a detection of another class that is not
  a true positive overlaps it by IoU >= ``iou_thr``;
- ``mislocalised``: not found, but a detection of its class that is not a
  true positive overlaps it by ``bg_iou`` <= IoU < ``iou_thr``;
- ``missed``: none of the above (also an object whose only cover at
  ``iou_thr`` went to a neighbour of its class, as VOC decides);

so that ``tp + wrong_class + mislocalised + missed == gt``. A detection
found for one object is never counted as an error on another. Every
detection that overlaps no box (IoU < ``bg_iou`` with every object, ignored
ones included) is ``fabricated``. Each count is also split by COCO's object
size (``small`` < 32^2 pixels of area, ``medium`` < 96^2, ``large``; objects
by their box, fabrications by their own).
"""
from typing import Dict

import numpy as np

from .tide import as_array

__all__ = ['voc_match', 'voc_error_breakdown']

OBJECT_KINDS = ('tp', 'wrong_class', 'mislocalised', 'missed')
SIZES = ('small', 'medium', 'large')
_AREA = (32 ** 2, 96 ** 2)


def _np(x, shape, dtype, name: str) -> np.ndarray:
    return as_array(x, shape, dtype, name, 'VOC matching')


def _overlaps(a: np.ndarray, b: np.ndarray, legacy: bool) -> np.ndarray:
    """``[len(a), len(b)]`` IoU, as mmdet's VOC evaluation computes it."""
    # imported here: ``import mmdag`` must not import mmdet (mmdag.stack
    # checks the installed stack before anything of OpenMMLab is imported)
    from mmdet.evaluation.functional import bbox_overlaps
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)), np.float32)
    return bbox_overlaps(a, b, use_legacy_coordinate=legacy)


def _inputs(gt_boxes, gt_labels, det_boxes, det_labels, det_scores, ignore_boxes,
            ignore_labels):
    gt_boxes = _np(gt_boxes, (-1, 4), np.float64, 'gt_boxes')
    gt_labels = _np(gt_labels, (-1,), np.int64, 'gt_labels')
    boxes = _np(det_boxes, (-1, 4), np.float64, 'det_boxes')
    labels = _np(det_labels, (-1,), np.int64, 'det_labels')
    scores = _np(det_scores, (-1,), np.float64, 'det_scores')
    ign = _np(ignore_boxes if ignore_boxes is not None else np.zeros((0, 4)), (-1, 4),
              np.float64, 'ignore_boxes')
    ign_labels = None if ignore_labels is None else _np(ignore_labels, (-1,), np.int64,
                                                        'ignore_labels')
    if len(gt_boxes) != len(gt_labels):
        raise ValueError(f'VOC matching: {len(gt_boxes)} gt_boxes but {len(gt_labels)} '
                         'gt_labels')
    if not len(boxes) == len(labels) == len(scores):
        raise ValueError(f'VOC matching: {len(boxes)} det_boxes, {len(labels)} det_labels and '
                         f'{len(scores)} det_scores: one each per detection')
    if ign_labels is not None and len(ign_labels) != len(ign):
        raise ValueError(f'VOC matching: {len(ign)} ignore_boxes but {len(ign_labels)} '
                         'ignore_labels')
    if np.isnan(scores).any():
        raise ValueError('VOC matching: a detection score is NaN')
    return gt_boxes, gt_labels, boxes, labels, scores, ign, ign_labels


def voc_match(gt_boxes, gt_labels, det_boxes, det_labels, det_scores, iou_thr: float = 0.5,
              ignore_boxes=None, ignore_labels=None,
              use_legacy_coordinate: bool = False) -> Dict[str, np.ndarray]:
    """VOC's matching on one image (module docstring), class by class.

    Args:
        gt_boxes (array-like): the objects' boxes ``[G, 4]``, ``x1, y1, x2,
            y2`` in pixels (numpy, a tensor or mmdet's boxes).
        gt_labels (array-like): their classes ``[G]``.
        det_boxes (array-like): the detections' boxes ``[D, 4]``.
        det_labels (array-like): their classes ``[D]``.
        det_scores (array-like): their scores ``[D]``; equal scores keep
            their order.
        iou_thr (float): the IoU of a match. Defaults to 0.5.
        ignore_boxes (array-like, optional): ignored objects ``[K, 4]``.
            Defaults to None.
        ignore_labels (array-like, optional): their classes ``[K]``; None:
            each is ignored for every class. Defaults to None.
        use_legacy_coordinate (bool): mmdet 1.x's boxes, ``x2 - x1 + 1``
            pixels wide, as mmdet's ``VOCMetric`` evaluates (the official
            VOC code's convention). Defaults to False.

    Returns:
        dict: over the detections in their input order, ``tp`` and ``fp``
        (bool; both False for a detection on an ignored object) and
        ``gt_index`` (the object a true positive found, -1 otherwise); over
        the objects, ``found`` (bool).
    """
    gt_boxes, gt_labels, boxes, labels, scores, ign, ign_labels = _inputs(
        gt_boxes, gt_labels, det_boxes, det_labels, det_scores, ignore_boxes, ignore_labels)
    tp = np.zeros(len(boxes), bool)
    fp = np.zeros(len(boxes), bool)
    gt_index = np.full(len(boxes), -1, np.int64)
    found = np.zeros(len(gt_boxes), bool)
    for c in np.unique(labels):
        dets = np.flatnonzero(labels == c)
        objects = np.flatnonzero(gt_labels == c)
        ignored = ign if ign_labels is None else ign[ign_labels == c]
        candidates = np.concatenate([gt_boxes[objects], ignored])
        if not len(candidates):
            fp[dets] = True
            continue
        iou = _overlaps(boxes[dets], candidates, use_legacy_coordinate)
        best, best_iou = iou.argmax(1), iou.max(1)
        covered = np.zeros(len(candidates), bool)
        for i in np.argsort(-scores[dets], kind='stable'):
            d = dets[i]
            if best_iou[i] < iou_thr:
                fp[d] = True
            elif best[i] >= len(objects):      # an ignored object: neither
                continue
            elif covered[best[i]]:             # taken: a duplicate
                fp[d] = True
            else:
                covered[best[i]] = tp[d] = True
                gt_index[d] = objects[best[i]]
    found[gt_index[tp]] = True
    return dict(tp=tp, fp=fp, gt_index=gt_index, found=found)


def _area(boxes: np.ndarray) -> np.ndarray:
    return np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)


def voc_error_breakdown(gt_boxes, gt_labels, det_boxes, det_labels, det_scores,
                        score_thr: float = 0.3, iou_thr: float = 0.5, bg_iou: float = 0.1,
                        ignore_boxes=None, ignore_labels=None,
                        use_legacy_coordinate: bool = False) -> Dict[str, int]:
    """The counts of one image (module docstring): ``gt``, each of
    ``tp, wrong_class, mislocalised, missed, fabricated``, and
    ``gt_<size>``, ``<kind>_<size>`` for each size ``small, medium, large``.

    Args:
        gt_boxes (array-like): the objects' boxes ``[G, 4]``, ``x1, y1, x2,
            y2`` in pixels.
        gt_labels (array-like): their classes ``[G]``.
        det_boxes (array-like): the detections' boxes ``[D, 4]``.
        det_labels (array-like): their classes ``[D]``.
        det_scores (array-like): their scores ``[D]``.
        score_thr (float): the detections counted (score >= it). Defaults
            to 0.3.
        iou_thr (float): the IoU of a match. Defaults to 0.5.
        bg_iou (float): below it a detection overlaps nothing. Defaults to
            0.1.
        ignore_boxes (array-like, optional): ignored objects ``[K, 4]``.
            Defaults to None.
        ignore_labels (array-like, optional): their classes ``[K]``; None:
            each is ignored for every class. Defaults to None.
        use_legacy_coordinate (bool): mmdet 1.x's boxes (:func:`voc_match`);
            True counts as mmdet's ``VOCMetric`` matches. Defaults to False.

    Returns:
        dict: the counts (int).
    """
    if not 0 <= bg_iou <= iou_thr <= 1:
        raise ValueError(f'VOC matching: needs 0 <= bg_iou <= iou_thr <= 1, got bg_iou '
                         f'{bg_iou}, iou_thr {iou_thr}')
    gt_boxes, gt_labels, boxes, labels, scores, ign, ign_labels = _inputs(
        gt_boxes, gt_labels, det_boxes, det_labels, det_scores, ignore_boxes, ignore_labels)
    keep = scores >= score_thr
    boxes, labels, scores = boxes[keep], labels[keep], scores[keep]
    match = voc_match(gt_boxes, gt_labels, boxes, labels, scores, iou_thr, ign, ign_labels,
                      use_legacy_coordinate)
    iou = _overlaps(boxes[~match['tp']], gt_boxes, use_legacy_coordinate)   # [D', G]
    same = labels[~match['tp']][:, None] == gt_labels[None, :]
    kind = np.full(len(gt_boxes), 'missed', dtype=object)
    mislocalised = ((iou >= bg_iou) & (iou < iou_thr) & same).any(0)
    kind[mislocalised] = 'mislocalised'
    kind[((iou >= iou_thr) & ~same).any(0)] = 'wrong_class'
    kind[match['found']] = 'tp'
    everything = np.concatenate([gt_boxes, ign])
    fabricated = _overlaps(boxes, everything, use_legacy_coordinate).max(
        1, initial=0.0) < bg_iou
    out = dict(gt=len(gt_boxes), **{k: int((kind == k).sum()) for k in OBJECT_KINDS},
               fabricated=int(fabricated.sum()))
    gsize, dsize = np.digitize(_area(gt_boxes), _AREA), np.digitize(_area(boxes), _AREA)
    for s, name in enumerate(SIZES):
        out[f'gt_{name}'] = int((gsize == s).sum())
        for k in OBJECT_KINDS:
            out[f'{k}_{name}'] = int(((kind == k) & (gsize == s)).sum())
        out[f'fabricated_{name}'] = int((fabricated & (dsize == s)).sum())
    return out
