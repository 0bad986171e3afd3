"""VOC's matching (mmdag.evaluation.voc_matching) against mmdet's own
``tpfp_default`` per detection, and the error breakdown built on it.

Boxes lie on the pixel grid: mmdet computes IoUs in float32, and with
integer boxes of at most a few hundred pixels an IoU is a ratio of integers
below 2**24, so it is either exactly 0.5 (which both sides then see, and
which tests ``>=``) or at least 1/(2 * union) > 1e-6 away, far above
float32's rounding; scores are distinct (mmdet's order of tied scores is
numpy's unstable sort's).
"""
import numpy as np
import pytest
from mmdet.evaluation.functional.mean_ap import tpfp_default

from mmdag.evaluation.det_errors import error_breakdown
from mmdag.evaluation.voc_matching import voc_error_breakdown, voc_match

KINDS = ('tp', 'wrong_class', 'mislocalised', 'missed')


def random_image(rng, classes=3, ignored=True):
    g = int(rng.integers(0, 8))
    xy = rng.integers(0, 200, (g, 2))
    gt = np.concatenate([xy, xy + rng.integers(8, 120, (g, 2))], 1).astype(float)
    gt_labels = rng.integers(0, classes, g)
    boxes, labels = [], []
    for box, label in zip(gt, gt_labels):        # near copies: matches and duplicates
        for _ in range(int(rng.integers(0, 4))):
            w, h = box[2] - box[0], box[3] - box[1]
            boxes.append(np.round(box + rng.uniform(-0.3, 0.3, 4) * [w, h, w, h]))
            labels.append(label if rng.uniform() < 0.7 else rng.integers(0, classes))
    k = int(rng.integers(0, 3)) if ignored else 0
    xy = rng.integers(0, 200, (k, 2))
    ign = np.concatenate([xy, xy + rng.integers(10, 100, (k, 2))], 1).astype(float)
    for box in ign:                              # near copies of ignored objects
        for _ in range(int(rng.integers(0, 3))):
            w, h = box[2] - box[0], box[3] - box[1]
            boxes.append(np.round(box + rng.uniform(-0.2, 0.2, 4) * [w, h, w, h]))
            labels.append(rng.integers(0, classes))
    for _ in range(int(rng.integers(0, 4))):     # anywhere
        xy = rng.integers(0, 250, 2)
        boxes.append(np.concatenate([xy, xy + rng.integers(4, 80, 2)]).astype(float))
        labels.append(rng.integers(0, classes))
    boxes = np.array(boxes, float).reshape(-1, 4)
    boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
    return dict(gt_boxes=gt, gt_labels=gt_labels, det_boxes=boxes,
                det_labels=np.array(labels, np.int64), det_scores=rng.permutation(len(boxes))
                / max(len(boxes), 1) + 0.01, ignore_boxes=ign,
                ignore_labels=rng.integers(0, classes, k))


def mmdet_tpfp(im, per_class_ignore=True):
    """``tpfp_default`` class by class, as mmdet's ``eval_map`` calls it."""
    tp = np.zeros(len(im['det_scores']), bool)
    fp = np.zeros(len(im['det_scores']), bool)
    for c in np.unique(im['det_labels']):
        d = im['det_labels'] == c
        ign = im['ignore_boxes'][im['ignore_labels'] == c] if per_class_ignore \
            else im['ignore_boxes']
        t, f = tpfp_default(np.concatenate([im['det_boxes'][d], im['det_scores'][d, None]], 1),
                            im['gt_boxes'][im['gt_labels'] == c], ign, iou_thr=0.5)
        tp[d], fp[d] = t[0].astype(bool), f[0].astype(bool)
    return tp, fp


@pytest.mark.parametrize('per_class_ignore', [True, False])
def test_tp_fp_equal_mmdet_tpfp_default(per_class_ignore):
    rng = np.random.default_rng(int(per_class_ignore))
    seen = dict(tp=0, fp=0, ignored=0, duplicate=0)
    for _ in range(200):
        im = random_image(rng)
        match = voc_match(im['gt_boxes'], im['gt_labels'], im['det_boxes'], im['det_labels'],
                          im['det_scores'], ignore_boxes=im['ignore_boxes'],
                          ignore_labels=im['ignore_labels'] if per_class_ignore else None)
        tp, fp = mmdet_tpfp(im, per_class_ignore)
        np.testing.assert_array_equal(match['tp'], tp)
        np.testing.assert_array_equal(match['fp'], fp)
        # a true positive names an object of its class, each object once
        found = match['gt_index'][match['tp']]
        assert len(set(found.tolist())) == len(found) == match['found'].sum()
        assert (im['gt_labels'][found] == im['det_labels'][match['tp']]).all()
        seen['tp'] += tp.sum()
        seen['fp'] += fp.sum()
        seen['ignored'] += (~tp & ~fp).sum()
        same = im['det_labels'][:, None] == im['gt_labels'][None, :]
        seen['duplicate'] += (fp[:, None] & same & (_iou(im['det_boxes'], im['gt_boxes']) >= 0.5)
                              & match['found'][None, :]).any(1).sum()
    assert min(seen.values()) > 10, seen       # every case of the matching occurred


def _iou(a, b):
    from mmdet.evaluation.functional import bbox_overlaps
    return bbox_overlaps(a, b) if len(a) and len(b) else np.zeros((len(a), len(b)))


def test_breakdown_adds_up_and_has_error_breakdowns_keys():
    rng = np.random.default_rng(5)
    for _ in range(100):
        im = random_image(rng)
        args = [im[k] for k in ('gt_boxes', 'gt_labels', 'det_boxes', 'det_labels',
                                'det_scores')]
        out = voc_error_breakdown(*args, score_thr=0.3, ignore_boxes=im['ignore_boxes'],
                                  ignore_labels=im['ignore_labels'])
        assert list(out) == list(error_breakdown(*args, score_thr=0.3))
        assert sum(out[k] for k in KINDS) == out['gt'] == len(im['gt_labels'])
        keep = im['det_scores'] >= 0.3
        match = voc_match(*[a[keep] if i > 1 else a for i, a in enumerate(args)],
                          ignore_boxes=im['ignore_boxes'], ignore_labels=im['ignore_labels'])
        assert out['tp'] == match['tp'].sum()
        for k in KINDS + ('fabricated', 'gt'):
            assert out[k] == sum(out[f'{k}_{s}'] for s in ('small', 'medium', 'large'))


def breakdown(gt, dets, **kwargs):
    """``gt``: (box, class); ``dets``: (box, class, score)."""
    return voc_error_breakdown(np.array([g[0] for g in gt], float).reshape(-1, 4),
                               [g[1] for g in gt],
                               np.array([d[0] for d in dets], float).reshape(-1, 4),
                               [d[1] for d in dets], [d[2] for d in dets], **kwargs)


def kinds(out):
    return {k: out[k] for k in KINDS + ('fabricated',) if out[k]}


G1, G2 = [0, 0, 100, 100], [0, 20, 100, 120]


def test_a_taken_best_object_makes_a_duplicate_as_in_voc():
    # the second box overlaps G1 (taken) by 0.90 and G2 by 0.74: VOC makes
    # it a duplicate and leaves G2 unfound (ImageNet's rule gives it G2)
    gt, dets = [(G1, 0), (G2, 0)], [(G1, 0, 0.9), ([0, 5, 100, 105], 0, 0.8)]
    match = voc_match(np.array([G1, G2], float), [0, 0], np.array([G1, [0, 5, 100, 105]], float),
                      [0, 0], [0.9, 0.8])
    assert match['tp'].tolist() == [True, False] and match['fp'].tolist() == [False, True]
    # G2's only cover is above 0.5: not mislocalised (bounded), missed
    assert kinds(breakdown(gt, dets)) == dict(tp=1, missed=1)


def test_each_kind_by_hand():
    assert kinds(breakdown([(G1, 0)], [(G1, 1, 0.9)])) == dict(wrong_class=1)
    assert kinds(breakdown([(G1, 0)], [([0, 0, 100, 30], 0, 0.9)])) == dict(mislocalised=1)
    # mislocalised is bounded below by bg_iou: IoU 0.1 is, 0.05 is not (the
    # box then overlaps nothing: fabricated)
    assert kinds(breakdown([(G1, 0)], [([0, 0, 100, 10], 0, 0.9)])) == dict(mislocalised=1)
    assert kinds(breakdown([(G1, 0)], [([0, 0, 100, 5], 0, 0.9)])) == dict(
        missed=1, fabricated=1)
    assert kinds(breakdown([(G1, 0)], [([300, 300, 350, 350], 0, 0.9)])) == dict(
        missed=1, fabricated=1)
    # below the score threshold a detection is not counted
    assert kinds(breakdown([(G1, 0)], [(G1, 0, 0.2)], score_thr=0.3)) == dict(missed=1)
    # a box found for one object is no error on another: G2 (class 1) is
    # covered at 0.8 by G1's true positive of class 0, and is missed
    assert kinds(breakdown([(G1, 0), ([0, 0, 100, 80], 1)], [(G1, 0, 0.9)])) == dict(
        tp=1, missed=1)
    # nor is a duplicate found: it is an error (here mislocalised on G2)
    assert kinds(breakdown([(G1, 0), ([0, 70, 100, 170], 0)],
                           [(G1, 0, 0.9), ([0, 0, 100, 95], 0, 0.8)])) == dict(
        tp=1, mislocalised=1)


def test_ignored_objects():
    gt = np.array([G1], float)
    ign = np.array([[0, 0, 100, 90]], float)
    # the box overlaps the ignored object (0.98) more than G1 (0.88): neither
    # a true nor a false positive, and G1 is not found
    match = voc_match(gt, [0], np.array([[0, 0, 100, 88]], float), [0], [0.9],
                      ignore_boxes=ign, ignore_labels=[0])
    assert not match['tp'].any() and not match['fp'].any() and not match['found'].any()
    # an ignored object of another class does not count for it
    match = voc_match(gt, [0], np.array([[0, 0, 100, 88]], float), [0], [0.9],
                      ignore_boxes=ign, ignore_labels=[1])
    assert match['tp'].tolist() == [True]
    # a box on an ignored object is not fabricated, and ignored objects
    # are not counted as objects
    out = voc_error_breakdown(np.zeros((0, 4)), [], ign, [0], [0.9], ignore_boxes=ign)
    assert out['gt'] == 0 and out['fabricated'] == 0


def test_bad_inputs():
    with pytest.raises(ValueError, match='det_scores'):
        voc_match(np.array([G1], float), [0], np.array([G1], float), [0], [0.9, 0.8])
    with pytest.raises(ValueError, match='gt_labels'):
        voc_match(np.array([G1], float), [0, 1], np.zeros((0, 4)), [], [])
    with pytest.raises(ValueError, match='ignore_labels'):
        voc_match(np.array([G1], float), [0], np.zeros((0, 4)), [], [],
                  ignore_boxes=np.array([G1], float), ignore_labels=[0, 1])
    with pytest.raises(ValueError, match='bg_iou'):
        voc_error_breakdown(np.array([G1], float), [0], np.zeros((0, 4)), [], [],
                            iou_thr=0.1, bg_iou=0.5)
