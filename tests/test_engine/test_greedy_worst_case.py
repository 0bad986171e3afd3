"""The segmentation worst case's selections (mmdag.evaluation.greedy): the
greedy one for mIoU at or below the image-wise worst case and every member,
better than both where the image-wise choice is not the mIoU's, at or above
an exhaustive search on small random cases; SEA's order and acceptance rule
beside mmdag's on the same per-image results; the accuracy selection; the
headline keys that take the worst figures (mmdag.evaluation.attack_metric)."""
import itertools

import numpy as np
import pytest
import torch

from mmdag.evaluation.greedy import (AccuracyWorstCase, GreedyWorstCase, _miou, accuracy_choice,
                                     greedy_miou_choice, iou_areas, sea_miou_choice)


def miou_of(inter, union, choice):
    rows = np.arange(len(choice))
    return _miou(inter[rows, choice].sum(0), union[rows, choice].sum(0))


def test_it_finds_what_the_image_wise_choice_misses():
    # 2 images, 2 members, 2 classes. Member 1 leaves more pixels correct on
    # image 0 (the image-wise worst case takes member 0 there), but member 1
    # wipes out class 1, which lowers the mIoU far more.
    inter = np.array([[[50, 10], [60, 0]],
                      [[40, 20], [45, 25]]], dtype=float)
    union = np.array([[[70, 30], [80, 20]],
                      [[60, 40], [60, 40]]], dtype=float)
    start = [0, 0]
    got = greedy_miou_choice(inter, union, start)
    assert got == [1, 0]
    assert miou_of(inter, union, got) < miou_of(inter, union, start)


@pytest.mark.parametrize('seed', range(20))
def test_at_or_below_every_member_and_the_start_and_near_the_optimum(seed):
    rng = np.random.default_rng(seed)
    n, k, c = 5, 3, 4
    union = rng.integers(1, 50, size=(n, k, c)).astype(float)
    inter = np.floor(union * rng.random((n, k, c)))
    union[rng.random((n, k, c)) < 0.2] = 0    # classes absent from some images
    inter[union == 0] = 0
    start = list(rng.integers(0, k, size=n))
    got = greedy_miou_choice(inter, union, start)
    m = miou_of(inter, union, got)
    assert m <= miou_of(inter, union, start) + 1e-12
    for j in range(k):
        assert m <= miou_of(inter, union, [j] * n) + 1e-12
    # a greedy search, not an exhaustive one: at or above the optimum
    best = min(miou_of(inter, union, list(c_)) for c_ in itertools.product(range(k), repeat=n))
    assert best <= m + 1e-12


def test_only_iou_results_are_read():
    res = tuple(torch.tensor([1.0, 2.0]) for _ in range(4))   # mmseg IoUMetric's per image
    inter, union = iou_areas(res)
    assert inter.tolist() == [1.0, 2.0] and union.tolist() == [1.0, 2.0]
    assert iou_areas({'pred_instances': 1}) is None and iou_areas((1, 2)) is None


class IoU:
    """A stand-in for mmseg's IoUMetric on its per-image results
    ``(intersect, union, pred, label)``: mIoU over the classes with a union
    and aAcc, pooled over the images, in float64."""

    def compute_metrics(self, results):
        inter = np.sum([r[0] for r in results], 0)
        union = np.sum([r[1] for r in results], 0)
        label = np.sum([r[3] for r in results], 0)
        return dict(aAcc=float(inter.sum() / label.sum()), mIoU=_miou(inter, union))


def image(inter, union, label):
    inter, union, label = (np.asarray(a, float) for a in (inter, union, label))
    return (inter, union, union - label + inter, label)   # pred = union - label + inter


def part_results(part, per_member, winners):
    part.add(per_member, winners)
    return part.compute_metrics(part.results)


def test_sea_keeps_the_last_member_below_the_image_start_mmdag_the_lowest():
    # every image alike: member 0 leaves IoU 0.8 per class, member 1 wipes
    # out both classes, member 2 leaves 0.5
    n = 2
    inter = np.array([[[8, 8], [0, 0], [5, 5]]] * n, dtype=float)
    union = np.full((n, 3, 2), 10.0)
    members = [miou_of(inter, union, [j] * n) for j in range(3)]
    assert members[1] < members[2] < members[0]
    # mmdag's rule: per image the member that lowers the mIoU most
    assert greedy_miou_choice(inter, union, [0] * n) == [1] * n
    # SEA's: from member 0, each member that is below the mIoU the image
    # started its turn with replaces the previous one, so member 2, tried
    # after member 1, is kept: the selection ends above member 1 alone
    sea = sea_miou_choice(inter, union)
    assert sea == [2] * n
    assert miou_of(inter, union, sea) == members[2] > members[1]
    # the reported greedy selection is at or below every member with either
    # rule: with SEA's it falls back to member 1 on every image
    label = [9, 9]
    per_member = [[image(inter[i, j], union[i, j], label) for i in range(n)] for j in range(3)]
    for rule, by_greedy in (('mmdag', 1), ('sea', 0)):
        part = GreedyWorstCase(['advr[A]', 'advr[B]', 'advr[C]'], ['A', 'B', 'C'], IoU(),
                               'advr_greedy', rule=rule)
        out = part_results(part, per_member, ['A'] * n)
        assert out['mIoU'] == members[1] and out['by_greedy'] == by_greedy
        assert out['images_B'] == n
    with pytest.raises(ValueError, match='greedy_rule'):
        GreedyWorstCase([], [], IoU(), 'advr_greedy', rule='best')


@pytest.mark.parametrize('seed', range(10))
def test_sea_rule_never_rises_above_its_start_where_every_class_is_labelled(seed):
    rng = np.random.default_rng(seed)
    n, k, c = 6, 3, 4
    union = rng.integers(1, 50, size=(n, k, c)).astype(float)   # every class on every image
    inter = np.floor(union * rng.random((n, k, c)))
    sea = sea_miou_choice(inter, union)
    assert miou_of(inter, union, sea) <= miou_of(inter, union, [0] * n) + 1e-12


def test_the_accuracy_selection_takes_the_fewest_pixels_correct_per_image():
    # image 0: the attack's winner (A) leaves more pixels correct than B;
    # image 1: a tie goes to the winner (B)
    a = [image([6, 3], [10, 8], [8, 7]), image([2, 2], [9, 9], [6, 6])]
    b = [image([1, 4], [12, 6], [8, 7]), image([3, 1], [8, 10], [6, 6])]
    assert accuracy_choice([[9, 5], [4, 4]], [0, 1]) == [1, 1]
    part = AccuracyWorstCase(['advr[A]', 'advr[B]'], ['A', 'B'], IoU(), 'advr_acc')
    out = part_results(part, [a, b], ['A', 'B'])
    assert out['images_A'] == 0 and out['images_B'] == 2 and 'by_greedy' not in out
    for member in (a, b):
        assert out['aAcc'] <= IoU().compute_metrics(member)['aAcc']
    assert out['aAcc'] < IoU().compute_metrics(a)['aAcc']


def test_the_headline_keys_take_the_worst_figures():
    from mmdag.evaluation.attack_metric import worst_headlines
    metrics = {'advr/aAcc': 70.0, 'advr/mIoU': 40.0, 'advr/mAcc': 50.0,
               'advr_acc/aAcc': 60.0, 'advr_acc/mIoU': 38.0, 'advr_acc/mAcc': 45.0,
               'advr_greedy/aAcc': 65.0, 'advr_greedy/mIoU': 30.0, 'advr_greedy/mAcc': 44.0,
               'advr[A]/aAcc': 66.0, 'advr[A]/mIoU': 35.0, 'advr[A]/mAcc': 47.0,
               'advr[B]/aAcc': 61.0, 'advr[B]/mIoU': 36.0, 'advr[B]/mAcc': 48.0,
               'orig/mIoU': 80.0}
    before = dict(metrics)
    sources = worst_headlines(metrics, None, ['A', 'B'])
    assert sources == {'advr/aAcc': 'advr_acc', 'advr/mIoU': 'advr_greedy',
                       'advr/mAcc': 'advr_greedy'}
    assert metrics['advr/aAcc'] == before['advr_acc/aAcc']
    assert metrics['advr/mIoU'] == before['advr_greedy/mIoU']
    assert metrics['advr/mAcc'] == before['advr_greedy/mAcc']
    # the attack's own per-image winners stay, as a secondary key
    assert {k: metrics[f'advr_winner/{k}'] for k in ('aAcc', 'mIoU', 'mAcc')} == \
        {k: before[f'advr/{k}'] for k in ('aAcc', 'mIoU', 'mAcc')}
    for name in ('aAcc', 'mIoU'):
        assert all(metrics[f'advr/{name}'] <= metrics[f'advr[{m}]/{name}'] for m in 'AB')
    # a member whose reported figure is lower (float rounding) gives the row
    metrics = dict(before, **{'advr[B]@2/aAcc': 59.0, 'advr[B]@2/mIoU': 29.0,
                              'advr[A]@2/aAcc': 70.0, 'advr[A]@2/mIoU': 50.0,
                              'advr@2/aAcc': 71.0, 'advr@2/mIoU': 51.0,
                              'advr_acc@2/aAcc': 60.0, 'advr_greedy@2/mIoU': 30.0})
    sources = worst_headlines(metrics, 2.0, ['A', 'B'])
    assert sources == {'advr@2/aAcc': 'advr[B]@2', 'advr@2/mIoU': 'advr[B]@2'}
    assert (metrics['advr@2/aAcc'], metrics['advr@2/mIoU']) == (59.0, 29.0)
    # a detector: every figure from the detection worst case
    metrics = {'advr/mAP': 0.23, 'advr/AP50': 0.3, 'advr_worst/mAP': 0.19,
               'advr_worst/AP50': 0.25, 'advr_worst/images_A': 3,
               'advr[A]/mAP': 0.2, 'advr[B]/mAP': 0.23}
    assert worst_headlines(metrics, None, ['A', 'B']) == {
        'advr/mAP': 'advr_worst', 'advr/AP50': 'advr_worst'}
    assert metrics['advr/mAP'] == 0.19 and metrics['advr_winner/mAP'] == 0.23
    assert 'advr/images_A' not in metrics
