"""The detection error breakdown and the worst case by objects found
(mmdag.evaluation.det_errors), on hand-made boxes whose answer is known."""
import numpy as np
import pytest

from mmdag.evaluation.det_errors import (KINDS, OBJECT_KINDS, SIZES, DetectionErrors,
                                         DetectionWorstCase, error_breakdown)

GT = np.array([[0, 0, 20, 20],        # small (400 px)
               [100, 100, 160, 160],  # medium (3600 px)
               [200, 0, 320, 120],    # large (14400 px)
               [0, 200, 50, 250]], float)      # medium (2500 px)
LABELS = np.array([1, 2, 3, 1])


def breakdown(boxes, labels, scores, **kw):
    return error_breakdown(GT, LABELS, np.array(boxes, float).reshape(-1, 4), np.array(labels),
                           np.array(scores, float), **kw)


def test_each_object_gets_one_kind_and_they_add_up():
    out = breakdown([[0, 0, 20, 20],          # object 0 found
                     [100, 100, 160, 160],    # object 1 covered, wrong class
                     [200, 0, 260, 60],       # object 2: its class, IoU 0.25: mislocalised
                     [400, 400, 450, 450],    # on the background: fabricated (medium, 2500 px)
                     [0, 200, 50, 250]],      # object 3, but under the score threshold
                    [1, 5, 3, 7, 1], [0.9, 0.8, 0.7, 0.6, 0.1], score_thr=0.3)
    assert out['gt'] == 4
    assert (out['tp'], out['wrong_class'], out['mislocalised'], out['missed']) == (1, 1, 1, 1)
    assert out['fabricated'] == 1
    assert sum(out[k] for k in OBJECT_KINDS) == out['gt']
    assert (out['tp_small'], out['wrong_class_medium'], out['mislocalised_large'],
            out['missed_medium']) == (1, 1, 1, 1)
    assert out['fabricated_medium'] == 1
    assert [out[f'gt_{s}'] for s in SIZES] == [1, 2, 1]
    for k in KINDS:
        assert sum(out[f'{k}_{s}'] for s in SIZES) == out[k]


def test_one_detection_finds_one_object_and_duplicates_are_not_fabrications():
    # two detections on object 0: the higher score finds it; the other is
    # neither a find nor a box on the background
    out = breakdown([[0, 0, 20, 20], [1, 1, 21, 21]], [1, 1], [0.5, 0.9])
    assert out['tp'] == 1 and out['missed'] == 3 and out['fabricated'] == 0


def test_nothing_detected_everything_missed_and_ignored_boxes_are_not_background():
    out = breakdown(np.zeros((0, 4)), [], [])
    assert out['missed'] == 4 and out['tp'] == 0 and out['fabricated'] == 0
    ign = np.array([[500, 500, 600, 600]], float)
    out = error_breakdown(GT, LABELS, np.array([[500, 500, 600, 600]], float), np.array([2]),
                          np.array([0.9]), ignore_boxes=ign)
    assert out['fabricated'] == 0 and out['gt'] == 4


@pytest.mark.parametrize('thr', [0.05, 0.3, 0.95])
def test_the_threshold_decides_what_is_a_detection(thr):
    out = breakdown([[0, 0, 20, 20]], [1], [0.5], score_thr=thr)
    assert out['tp'] == (1 if thr <= 0.5 else 0)


class SumMetric:
    """A stand-in for a detection metric: 'mAP' is the sum of the results."""

    def compute_metrics(self, results):
        return dict(mAP=sum(results))


def row(tp):
    return dict(error_breakdown(GT, LABELS, GT[:tp], LABELS[:tp], np.ones(tp)))


def worst_case(member_results):
    part = DetectionWorstCase(['PGD', 'TOG'], SumMetric(), 'advr_worst')
    # image 0: TOG leaves fewer objects; image 1: a tie goes to the attack's
    # winner (TOG); image 2: PGD leaves fewer though the attack's winner was TOG
    part.add(member_results, [[row(3), row(2), row(0)], [row(1), row(2), row(2)]],
             ['PGD', 'TOG', 'TOG'])
    assert [r['choice'] for r in part.results] == [1, 1, 0]
    return part.compute_metrics(part.results)


def test_the_worst_case_takes_per_image_the_member_that_leaves_fewest_objects_found():
    out = worst_case([[10, 20, 30], [1, 2, 31]])
    assert out['mAP'] == 1 + 2 + 30 and out['by_objects_found'] == 1
    assert out['images_PGD'] == 1 and out['images_TOG'] == 2
    assert out['errors/missed'] == (4 - 1) + (4 - 2) + 4
    assert out['errors/tp'] + out['errors/missed'] == 12


def test_the_worst_case_metric_is_at_or_below_every_members():
    # the per-image choice (11 + 21 + 30) is above PGD on every image (60):
    # PGD everywhere is the worst case, as SEA's start for mIoU
    out = worst_case([[10, 20, 30], [11, 21, 31]])
    assert out['mAP'] == 60 and out['by_objects_found'] == 0
    assert out['images_PGD'] == 3 and out['errors/tp'] == 3 + 2 + 0


def test_the_breakdown_part_sums_per_variant_and_splits_sizes_where_asked():
    part = DetectionErrors(['orig', 'advr', 'advr@2'], sizes=['advr'])
    a = error_breakdown(GT, LABELS, GT, LABELS, np.ones(4))
    b = error_breakdown(GT, LABELS, GT[:1], LABELS[:1], np.ones(1))
    part.add({'orig': [a, a], 'advr': [b, a], 'advr@2': [a, b]})
    out = part.compute_metrics(part.results)
    assert out['gt'] == 8 and out['orig/tp'] == 8 and out['advr/tp'] == 5
    assert out['advr/missed'] == 3 and 'advr/missed_small' in out and 'orig/tp_small' not in out
    assert DetectionErrors(['advr']).compute_metrics([{'advr': None}]) == {}
