"""The worst case over an ensemble's members for mIoU: a greedy selection per image.

mIoU is not a mean over images: the image-wise worst case (the member that
leaves the fewest targets correct, what :class:`mmdag.attacks.WorstCase`
returns) need not give the lowest mIoU. SEA (Croce et al., ECCV 2024)
therefore chooses per image greedily for mIoU. This module does so from
each member's own per-image results of an IoU metric (mmseg's
``IoUMetric``: per image, the per-class areas of intersection and union),
which the attack hook's member predictions give:

1. start from the lowest-mIoU selection among the image-wise worst case and
   each member on every image;
2. in test-set order, give each image the member that lowers the whole
   set's mIoU most, the other images' choices held; repeat until a pass
   changes nothing.

Written from the paper's description, not from its code. The result is at
or below the image-wise worst case and every member, by construction (the
start is, and a change is made only when it lowers the mIoU).
"""
from typing import List, Optional, Sequence

import numpy as np
from mmengine.evaluator import BaseMetric

__all__ = ['greedy_miou_choice', 'GreedyWorstCase', 'iou_areas']

#: most passes over the images (each strictly lowers the mIoU; a guard only)
MAX_PASSES = 20


def iou_areas(result) -> Optional[tuple]:
    """``(intersect [C], union [C])`` of an IoU metric's per-image result
    (mmseg: ``(area_intersect, area_union, area_pred_label, area_label)``),
    None for any other result."""
    if not isinstance(result, (tuple, list)) or len(result) != 4:
        return None
    try:
        inter, union = (np.asarray(getattr(a, 'cpu', lambda: a)(), dtype=np.float64)
                        for a in result[:2])
    except (TypeError, ValueError):
        return None
    if inter.ndim != 1 or inter.shape != union.shape:
        return None
    return inter, union


def _miou(inter: np.ndarray, union: np.ndarray) -> float:
    valid = union > 0
    return float((inter[valid] / union[valid]).mean()) if valid.any() else float('nan')


def greedy_miou_choice(inter: np.ndarray, union: np.ndarray, start: Sequence[int]) -> List[int]:
    """The member per image (module docstring) from ``inter`` and ``union``
    ``[N images, K members, C classes]`` and the image-wise choice ``start``."""
    n, k = inter.shape[:2]
    rows = np.arange(n)
    candidates = [np.asarray(start, dtype=int)] + [np.full(n, j) for j in range(k)]
    choice = min(candidates, key=lambda c: _miou(inter[rows, c].sum(0), union[rows, c].sum(0)))
    choice = choice.copy()
    tot_i, tot_u = inter[rows, choice].sum(0), union[rows, choice].sum(0)
    best = _miou(tot_i, tot_u)
    for _ in range(MAX_PASSES):
        changed = False
        for i in range(n):
            cur = choice[i]
            for j in range(k):
                if j == cur:
                    continue
                ti = tot_i - inter[i, cur] + inter[i, j]
                tu = tot_u - union[i, cur] + union[i, j]
                m = _miou(ti, tu)
                if m < best - 1e-12:
                    best, choice[i], tot_i, tot_u, cur = m, j, ti, tu, j
                    changed = True
        if not changed:
            break
    return [int(c) for c in choice]


class GreedyWorstCase(BaseMetric):
    """The greedy worst case of an ensemble's members, evaluated with the
    wrapped metric (keys ``advr_greedy/mIoU``...). Its per-image results are
    each member's own result and the image-wise winner; a part of
    :class:`~mmdag.evaluation.DAGMetric`, which feeds it.

    Args:
        variants (Sequence[str]): the members' variants (``advr[PGD]``...).
        names (Sequence[str]): the members' names, in the same order.
        evaluator (BaseMetric): a wrapped metric whose ``compute_metrics``
            evaluates the chosen results.
        prefix (str): the keys' prefix (``advr_greedy``).
    """

    def __init__(self, variants: Sequence[str], names: Sequence[str], evaluator: BaseMetric,
                 prefix: str, collect_device: str = 'cpu') -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.variants, self.names, self.evaluator = list(variants), list(names), evaluator

    def add(self, member_results: List[list], winners: List[Optional[str]]) -> None:
        """One batch: ``member_results[k][i]`` is member k's result on image i."""
        for i, winner in enumerate(winners):
            self.results.append(dict(
                members=[r[i] for r in member_results],
                winner=self.names.index(winner) if winner in self.names else 0))

    def process(self, data_batch, data_samples) -> None:   # fed by DAGMetric.process
        pass

    def compute_metrics(self, results: list) -> dict:
        areas = [[iou_areas(m) for m in r['members']] for r in results]
        if not areas or any(a is None for row in areas for a in row):
            return {}   # not an IoU metric: no greedy selection
        inter = np.stack([[a[0] for a in row] for row in areas])
        union = np.stack([[a[1] for a in row] for row in areas])
        choice = greedy_miou_choice(inter, union, [r['winner'] for r in results])
        out = self.evaluator.compute_metrics([r['members'][k] for r, k in zip(results, choice)])
        out.update({f'images_{n}': sum(c == j for c in choice) for j, n in enumerate(self.names)})
        return out
