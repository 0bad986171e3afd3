"""TIDE's error breakdown (mmdag.evaluation.tide) against the authors'
package ``tidecv`` on the same detections: random sets where every error
type occurs, hand-made images where the error type and the AP are known,
and TIDE's picture.

Tolerance: both sides compute every IoU, precision and recall with the same
float64 operations (pycocotools for the IoU, one division each for
precision and recall) and sum each class's 101 interpolated precisions in
the same order, so each class's AP is the same number; only the order of
the mean over the K classes (APs in [0, 100]) may differ, by at most
(K - 1) * 2**-53 * 100 * K, below 1e-11 AP points for K <= 20. The
tolerance is 1e-9 AP points; a detection whose type or match changes moves
whole interpolation points of its class, each worth 100/101 of a
precision step.
"""
import numpy as np
import pytest

from mmdag.evaluation.tide import (ERRORS, SPECIAL_ERRORS, TIDE_NAMES, sample_tide, tide_breakdown,
                                   tide_image, tide_summary)

TOL = 1e-9


def _xywh(box):
    return [float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])]


def tidecv_breakdown(images, pos_thr=0.5, bg_thr=0.1, max_dets=100):
    """``tidecv``'s AP, dAP and error counts of the same per-image dicts."""
    import tidecv  # requirements/oracles.txt: installed with the tests, never skipped
    from tidecv.quantify import TIDE, TIDERun
    gt, preds = tidecv.Data('gt', max_dets=max_dets), tidecv.Data('preds')
    for i, im in enumerate(images):
        gt.add_image(i, f'image {i}')
        for box, label in zip(im['gt_boxes'], im['gt_labels']):
            gt.add_ground_truth(i, int(label), _xywh(box))
        ignore_labels = im.get('ignore_labels')
        for k, box in enumerate(im.get('ignore_boxes', [])):
            label = -1 if ignore_labels is None else int(ignore_labels[k])
            gt.add_ignore_region(i, label, _xywh(box))
        for box, label, score in zip(im['det_boxes'], im['det_labels'], im['det_scores']):
            preds.add_detection(i, int(label), float(score), _xywh(box))
    # TIDERun is what TIDE.evaluate runs (without TIDE's plotter set-up)
    run = TIDERun(gt, preds, pos_thr, bg_thr, TIDE.BOX, gt.max_dets, True)
    by_name = {v: k for k, v in TIDE_NAMES.items()}
    out = {'AP': run.ap}
    out.update({f'dAP/{by_name[e.short_name]}': v for e, v in run.fix_main_errors().items()})
    out.update({f'dAP/{by_name[e.short_name]}': v
                for e, v in run.fix_special_errors().items()})
    out.update({f'count/{by_name[e.short_name]}': v for e, v in run.count_errors().items()})
    return out


def ours(images, **kwargs):
    return tide_breakdown(*[[im.get(k) for im in images] for k in (
        'gt_boxes', 'gt_labels', 'det_boxes', 'det_labels', 'det_scores', 'ignore_boxes',
        'ignore_labels')], **kwargs)


def assert_same(mine, theirs):
    keys = ['AP'] + [f'dAP/{e}' for e in ERRORS + SPECIAL_ERRORS]
    for k in keys:
        assert abs(mine[k] - theirs[k]) <= TOL, (k, mine[k], theirs[k])
    for e in ERRORS:
        assert mine[f'count/{e}'] == theirs[f'count/{e}'], (e, mine, theirs)


def _jitter(rng, box, scale, integer):
    w, h = box[2] - box[0], box[3] - box[1]
    out = box + rng.uniform(-scale, scale, 4) * np.array([w, h, w, h])
    return np.round(out) if integer else out


def random_set(seed, images=40, classes=4, integer=False, ignore=True):
    """Images with objects of ``classes`` classes and detections made to be
    found, duplicates, of a wrong class, badly localised, both, on the
    background, and objects left without detection (``integer``: boxes on
    the pixel grid, where IoUs hit the thresholds exactly)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(images):
        g = int(rng.integers(0, 7))
        xy = rng.uniform(0, 300, (g, 2))
        wh = rng.uniform(10, 150, (g, 2))
        gt_boxes = np.concatenate([xy, xy + wh], 1)
        if integer:
            gt_boxes = np.round(gt_boxes)
        gt_labels = rng.integers(0, classes, g)
        boxes, labels = [], []
        for box, label in zip(gt_boxes, gt_labels):
            for kind in rng.choice(['tp', 'dupe', 'cls', 'loc', 'both', 'none'],
                                   size=int(rng.integers(0, 4))):
                other = (label + rng.integers(1, classes)) % classes
                if kind in ('tp', 'dupe'):
                    boxes.append(_jitter(rng, box, 0.08, integer))
                    labels.append(label)
                elif kind == 'cls':
                    boxes.append(_jitter(rng, box, 0.08, integer))
                    labels.append(other)
                elif kind in ('loc', 'both'):
                    boxes.append(_jitter(rng, box, 0.45, integer))
                    labels.append(label if kind == 'loc' else other)
        for _ in range(int(rng.integers(0, 4))):          # background
            xy = rng.uniform(0, 400, 2)
            b = np.concatenate([xy, xy + rng.uniform(5, 60, 2)])
            boxes.append(np.round(b) if integer else b)
            labels.append(int(rng.integers(0, classes)))
        boxes = np.array(boxes, dtype=np.float64).reshape(-1, 4)
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
        im = dict(gt_boxes=gt_boxes, gt_labels=gt_labels, det_boxes=boxes,
                  det_labels=np.array(labels, np.int64), det_scores=rng.uniform(0, 1, len(boxes)))
        if ignore and rng.uniform() < 0.3:
            xy = rng.uniform(0, 300, (2, 2))
            im['ignore_boxes'] = np.concatenate([xy, xy + rng.uniform(40, 200, (2, 2))], 1)
            if rng.uniform() < 0.5:
                im['ignore_labels'] = rng.integers(0, classes, 2)
        out.append(im)
    return out


@pytest.mark.parametrize('seed, integer', [(0, False), (1, False), (2, True), (3, True)])
def test_random_sets_equal_tidecv(seed, integer):
    images = random_set(seed, integer=integer)
    mine, theirs = ours(images), tidecv_breakdown(images)
    assert_same(mine, theirs)
    # every error type occurs, and some of each costs AP
    for e in ERRORS:
        assert mine[f'count/{e}'] > 0, e
    assert sum(mine[f'dAP/{e}'] > 0 for e in ERRORS) >= 5, mine


def test_other_thresholds_and_max_dets_equal_tidecv():
    images = random_set(5, images=25)
    for kwargs in (dict(pos_thr=0.7, bg_thr=0.2), dict(max_dets=4)):
        assert_same(ours(images, **kwargs), tidecv_breakdown(images, **kwargs))
    # the set has images with more detections than 4: the cap changes the AP
    assert ours(images, max_dets=4)['AP'] != ours(images)['AP']


# -------------------------------------------------------------- hand-made
A, B, C = [0, 0, 100, 100], [200, 200, 300, 300], [400, 400, 500, 500]


def image(gt, dets, **extra):
    """``gt``: (box, class); ``dets``: (box, class, score)."""
    return dict(gt_boxes=np.array([g[0] for g in gt], float).reshape(-1, 4),
                gt_labels=np.array([g[1] for g in gt], np.int64),
                det_boxes=np.array([d[0] for d in dets], float).reshape(-1, 4),
                det_labels=np.array([d[1] for d in dets], np.int64),
                det_scores=np.array([d[2] for d in dets], float), **extra)


def ap101(points):
    """AP of a smoothed curve given as ``(recall up to which, precision)``
    steps: the share of COCO's 101 recalls 0.00..1.00 at or below each."""
    grid = np.arange(101) / 100
    total, low = 0.0, -1.0
    for recall, precision in points:
        total += precision * ((grid > low) & (grid <= recall + 1e-12)).sum()
        low = recall + 1e-12
    return total / 101 * 100


FOUND = [(A, 0, 0.9), (B, 0, 0.7)]          # A and B of class 0, found
# with an error scored between them: precision 1 up to recall 1/2, 2/3 above
BETWEEN = ap101([(0.5, 1.0), (1.0, 2 / 3)])
# A and B found, C (class 0) not: recall 2/3 at most
TWO_OF_THREE = ap101([(2 / 3, 1.0)])

CASES = {
    # a box on the background between the two true positives
    'bkg': (image([(A, 0), (B, 0)], FOUND + [([600, 0, 650, 50], 0, 0.8)]),
            BETWEEN, 100 - BETWEEN),
    # a second box on A (taken): removing it gives the precision back
    'dupe': (image([(A, 0), (B, 0)], FOUND + [([0, 0, 100, 90], 0, 0.8)]),
             BETWEEN, 100 - BETWEEN),
    # C boxed at IoU 0.4 by its class: fixed, it finds C
    'loc': (image([(A, 0), (B, 0), (C, 0)], FOUND + [([400, 400, 500, 440], 0, 0.8)]),
            ap101([(1 / 3, 1.0), (2 / 3, 2 / 3)]), 100 - ap101([(1 / 3, 1.0), (2 / 3, 2 / 3)])),
    # C boxed exactly as class 1 (a class with no object: AP 0 in the mean)
    'cls': (image([(A, 0), (B, 0), (C, 0)], FOUND + [(C, 1, 0.8)]),
            TWO_OF_THREE / 2, 100 - TWO_OF_THREE / 2),
    # C boxed at IoU 0.4 as class 1: neither fix alone finds C
    'both': (image([(A, 0), (B, 0), (C, 0)], FOUND + [([400, 400, 500, 440], 1, 0.8)]),
             TWO_OF_THREE / 2, TWO_OF_THREE / 2),
    # C with no detection at all
    'miss': (image([(A, 0), (B, 0), (C, 0)], FOUND), TWO_OF_THREE, 100 - TWO_OF_THREE),
}


@pytest.mark.parametrize('kind', ERRORS)
def test_hand_made_error_types(kind):
    im, ap, gain = CASES[kind]
    mine = ours([im])
    assert abs(mine['AP'] - ap) <= TOL, (mine['AP'], ap)
    assert abs(mine[f'dAP/{kind}'] - gain) <= TOL, (mine[f'dAP/{kind}'], gain)
    assert gain > 1
    expected = {e: int(e == kind) for e in ERRORS}
    if kind == 'both':      # C, covered by no fixable error, is also missed
        expected['miss'] = 1
    assert {e: mine[f'count/{e}'] for e in ERRORS} == expected
    assert mine['count/tp'] == 2 and mine['count/gt'] == len(im['gt_labels'])
    assert_same(mine, tidecv_breakdown([im]))


def test_fix_goes_to_the_highest_scored_error_of_an_object():
    # two localisation errors on C: only the higher one becomes C's match
    # when fixed, the other leaves; a class error on C scored in between
    # takes the fix from the lower one too
    im = image([(A, 0), (B, 0), (C, 0)], FOUND + [
        ([400, 400, 500, 440], 0, 0.8), ([400, 400, 500, 445], 0, 0.3), (C, 1, 0.5)])
    record = tide_image(**im)
    assert record['det_error'].tolist() == [-1, 1, -1, 0, 1]     # score order
    assert record['det_fix'].tolist() == [-1, 0, -1, -1, -1]
    assert_same(tide_summary([record]), tidecv_breakdown([im]))


def test_thresholds_are_inclusive_as_in_tide():
    # IoU exactly 0.5 matches; a second box at exactly 0.5 on the taken
    # object is badly localised, not a duplicate; a box of its class at
    # exactly 0.1 is badly localised; one of another class at exactly 0.1 is
    # on the background
    im = image([(A, 0), (B, 0)], [([0, 0, 100, 50], 0, 0.9), ([0, 50, 100, 100], 0, 0.85),
                                  ([200, 200, 300, 210], 0, 0.8), ([200, 200, 300, 210], 1, 0.7)])
    record = tide_image(**im)
    assert record['det_state'].tolist() == [1, 0, 0, 0]
    loc, bkg = ERRORS.index('loc'), ERRORS.index('bkg')
    assert record['det_error'].tolist() == [-1, loc, loc, bkg]
    assert record['det_fix'].tolist() == [-1, -1, 0, -1]     # A is taken: that one leaves
    assert_same(tide_summary([record]), tidecv_breakdown([im]))


def test_ignored_regions():
    # a box inside an ignored region leaves the AP but is still a TIDE error
    box = [600, 0, 650, 50]
    im = image([(A, 0), (B, 0)], FOUND + [(box, 0, 0.8)],
               ignore_boxes=np.array([[590, 0, 700, 60]], float))
    mine = ours([im])
    assert mine['AP'] == 100 and mine['count/bkg'] == 1
    assert_same(mine, tidecv_breakdown([im]))
    # nor a region that covers exactly half of it (TIDE ignores above 0.5)
    half = dict(im, ignore_boxes=np.array([[600, 0, 625, 50]], float))
    assert abs(ours([half])['AP'] - BETWEEN) <= TOL
    assert_same(ours([half]), tidecv_breakdown([half]))
    # a region of another class does not ignore it
    im['ignore_labels'] = np.array([1])
    assert abs(ours([im])['AP'] - BETWEEN) <= TOL
    assert_same(ours([im]), tidecv_breakdown([im]))


def test_images_without_objects_or_detections():
    images = [image([], [(A, 0, 0.5)]), image([(A, 0)], []), image([], [])]
    mine = ours(images)
    assert mine['count/bkg'] == 1 and mine['count/miss'] == 1 and mine['AP'] == 0
    assert_same(mine, tidecv_breakdown(images))
    assert tide_summary([])['AP'] == 0


def test_deterministic_and_independent_of_input_order():
    images = random_set(7, images=30)
    first = ours(images)
    assert ours(images) == first
    rng = np.random.default_rng(0)
    shuffled = []
    for im in images:
        p = rng.permutation(len(im['det_scores']))
        shuffled.append(dict(im, det_boxes=im['det_boxes'][p], det_labels=im['det_labels'][p],
                             det_scores=im['det_scores'][p]))
    assert ours(shuffled) == first


def test_tensor_inputs_and_bad_inputs():
    torch = pytest.importorskip('torch')
    im = CASES['loc'][0]
    as_tensors = {k: torch.as_tensor(v) for k, v in im.items()}
    assert ours([as_tensors]) == ours([im])
    with pytest.raises(ValueError, match='det_scores'):
        tide_image(**dict(im, det_scores=im['det_scores'][:-1]))
    with pytest.raises(ValueError, match='gt_boxes has shape'):
        tide_image(**dict(im, gt_boxes=np.zeros((2, 3))))
    with pytest.raises(ValueError, match='bg_thr'):
        tide_image(**im, pos_thr=0.1, bg_thr=0.5)
    with pytest.raises(ValueError, match='not finite'):
        tide_image(**dict(im, det_scores=np.array([0.9, 0.7, np.nan])))
    with pytest.raises(ValueError, match='images'):
        tide_breakdown([im['gt_boxes']], [], [], [], [])


def test_data_samples():
    """mmdet's data samples (boxes as tensors, difficult objects ignored)."""
    torch = pytest.importorskip('torch')
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    im = dict(CASES['bkg'][0], ignore_boxes=np.array([[590, 0, 700, 60]], float),
              ignore_labels=np.array([0]))
    sample = DetDataSample()
    sample.gt_instances = InstanceData(bboxes=torch.as_tensor(im['gt_boxes']),
                                       labels=torch.as_tensor(im['gt_labels']))
    sample.ignored_instances = InstanceData(bboxes=torch.as_tensor(im['ignore_boxes']),
                                            labels=torch.as_tensor(im['ignore_labels']))
    sample.pred_instances = InstanceData(bboxes=torch.as_tensor(im['det_boxes']),
                                         labels=torch.as_tensor(im['det_labels']),
                                         scores=torch.as_tensor(im['det_scores']))
    mine = tide_summary([sample_tide(sample)])
    assert mine == ours([im]) and mine['AP'] == 100     # the box on the ignored region left
    assert sample_tide(dict(gt_instances=None, pred_instances=None)) is None


def test_picture(tmp_path):
    from mmdag.evaluation.tide_figure import TIDE_COLORS, _draw, tide_bars
    rows = {name: ours([CASES[kind][0]]) for name, kind in
            (('advr', 'loc'), ('orig', 'dupe'), ('PGD', 'cls'), ('TOG', 'miss'))}
    path = str(tmp_path / 'pictures' / 'tide.png')
    assert tide_bars(rows, path, 'a title') == path
    with open(path, 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'
    assert sorted(p.name for p in (tmp_path / 'pictures').iterdir()) == ['tide.png']
    # what is drawn: per error type, one bar per variant, orig and advr first
    fig, ax = _draw(rows, '')
    order = ['orig', 'advr', 'PGD', 'TOG']
    assert [t.get_text().split('\n')[0] for t in ax.get_xticklabels()] == order
    for e in ERRORS:
        bars = [p for p in ax.patches if p.get_gid() == f'dAP/{e}']
        assert [b.get_height() for b in bars] == [rows[n][f'dAP/{e}'] for n in order]
        assert len({b.get_facecolor() for b in bars}) == 1
    assert tide_bars({}, path) is None
    with pytest.raises(KeyError, match='dAP/miss'):
        tide_bars({'orig': {'AP': 1.0}}, path)
    assert len(TIDE_COLORS) == len(ERRORS)
