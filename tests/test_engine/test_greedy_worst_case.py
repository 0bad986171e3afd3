"""SEA's greedy per-image selection for mIoU (mmdag.evaluation.greedy): at or
below the image-wise worst case and every member, better than both where the
image-wise choice is not the mIoU's, and the same as an exhaustive search on
small random cases."""
import itertools

import numpy as np
import pytest
import torch

from mmdag.evaluation.greedy import _miou, greedy_miou_choice, iou_areas


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
