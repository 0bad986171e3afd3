"""The segmentation worst case over an ensemble's members, one selection per
headline figure.

mIoU and aAcc are not means over images of one per-image score, so no single
per-image choice minimises both: SEA (Croce et al., ECCV 2024, the authors'
``tools/worse_only.py``) reports the worst accuracy and the worst mIoU from
two selections. So does mmdag, from each member's own per-image results of an
IoU metric (mmseg's ``IoUMetric``: per image, the per-class areas of
intersection and union), which the attack hook's member predictions give:

- **accuracy** (:func:`accuracy_choice`, keys ``advr_acc/...``): per image,
  the member whose prediction leaves the fewest labelled pixels correct
  (SEA's ``worse_case_eval``); ties go to the attack's own winner, then to
  the earlier member. An image's labelled pixels are the same for every
  member, so the pooled aAcc is at or below every member's, by
  construction.
- **mIoU** (:func:`greedy_miou_choice`, keys ``advr_greedy/...``), greedy per
  image, by one of two rules (``rule``):

  - ``'mmdag'`` (default): start from the lowest-mIoU selection among the
    attack's image-wise winners and each member on every image; in test-set
    order give each image the member that lowers the whole set's mIoU most,
    the other images' choices held; repeat until a pass changes nothing.
  - ``'sea'`` (:func:`sea_miou_choice`, transcribed from ``worst_case_miou``
    of ``tools/worse_only.py``): start from the first member on every image
    (SEA's Mask-CE-Bal); in rounds over the images in a shuffled order
    (Python's ``random`` seeded with 225, as theirs), try each member in
    order and take it when the mIoU it gives is below the mIoU the image
    started its turn with, so that the LAST such member wins, not the
    lowest; stop when a round lowers the mIoU by 1e-6 or less (mIoU as a
    fraction) or after 1000 rounds.

  The differences: SEA's start and moves can stop above a member's mIoU
  (it starts from one member and never compares with the others), and its
  acceptance rule can keep a member that lowers the mIoU less than another
  would. Where SEA skips a class whose running union is 0, its lists lose
  that entry and later classes shift by one (a slip that VOC, where every
  class occurs, never meets); the transcription keeps every class in place.

Both rules then keep the lowest-mIoU selection among their choice and each
member on every image (``by_greedy``: whether the rule's choice was kept), so
that the mIoU reported is at or below every member's for either rule.
:class:`~mmdag.evaluation.AttackMetric` reports ``advr_acc``'s aAcc and
``advr_greedy``'s other figures as ADVR's headline.
"""
import random
from typing import List, Optional, Sequence

import numpy as np
from mmengine.evaluator import BaseMetric

__all__ = ['accuracy_choice', 'greedy_miou_choice', 'sea_miou_choice', 'AccuracyWorstCase',
           'GreedyWorstCase', 'iou_areas', 'GREEDY_RULES']

#: most passes over the images (each strictly lowers the mIoU; a guard only)
MAX_PASSES = 20
#: the greedy mIoU selection's rules (module docstring)
GREEDY_RULES = ('mmdag', 'sea')
#: SEA's seed of the image order, its rounds and its stopping gain
SEA_SEED, SEA_ROUNDS, SEA_MIN_GAIN = 225, 1000, 1e-6


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


def _selected(inter: np.ndarray, union: np.ndarray, choice: Sequence[int]) -> float:
    rows = np.arange(inter.shape[0])
    choice = np.asarray(choice, dtype=int)
    return _miou(inter[rows, choice].sum(0), union[rows, choice].sum(0))


def _lowest(inter: np.ndarray, union: np.ndarray, choice: Sequence[int]) -> List[int]:
    """The lowest-mIoU selection among ``choice`` and each member on every
    image (ties to ``choice``, then to the earlier member)."""
    n, k = inter.shape[:2]
    candidates = [list(choice)] + [[j] * n for j in range(k)]
    return min(candidates, key=lambda c: _selected(inter, union, c))


def accuracy_choice(correct: np.ndarray, start: Sequence[int]) -> List[int]:
    """Per image the member with the fewest labelled pixels correct, from
    ``correct`` ``[N images, K members]``; ties go to ``start`` (the
    attack's own winner), then to the earlier member."""
    out = []
    for row, first in zip(np.asarray(correct, dtype=np.float64), start):
        order = [int(first)] + [j for j in range(len(row)) if j != first]
        out.append(min(order, key=lambda j: row[j]))
    return out


def greedy_miou_choice(inter: np.ndarray, union: np.ndarray, start: Sequence[int]) -> List[int]:
    """mmdag's rule (module docstring) from ``inter`` and ``union``
    ``[N images, K members, C classes]`` and the image-wise choice ``start``."""
    n, k = inter.shape[:2]
    rows = np.arange(n)
    choice = np.asarray(_lowest(inter, union, start), dtype=int)
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


def _sea_miou(inter: np.ndarray, union: np.ndarray, eps: float = 0.0) -> float:
    """SEA's ``_compute_miou`` (``eps=0``) and ``_compute_miou_subtraction``
    (``eps=1e-8``): the mean IoU over the classes whose union is not 0."""
    valid = union != 0
    return float((inter[valid] / (union[valid] + eps)).mean())


def sea_miou_choice(inter: np.ndarray, union: np.ndarray, seed: int = SEA_SEED,
                    rounds: int = SEA_ROUNDS) -> List[int]:
    """SEA's rule (module docstring), transcribed from ``worst_case_miou`` of
    the authors' ``tools/worse_only.py``, from ``inter`` and ``union``
    ``[N images, K members, C classes]``."""
    n, k = inter.shape[:2]
    rng = random.Random(seed)
    selected = [0] * n                          # "we start from mask-ce-bal"
    run_i, run_u = inter[:, 0].sum(0), union[:, 0].sum(0)
    final = _sea_miou(run_i, run_u)
    prev_best = 10.0
    for _ in range(rounds):
        order = list(range(n))
        rng.shuffle(order)
        for idx in order:
            for attack in range(k):
                new_i = run_i + inter[idx, attack] - inter[idx, selected[idx]]
                new_u = run_u + union[idx, attack] - union[idx, selected[idx]]
                # the union that decides which classes count is the running one
                valid = run_u != 0
                est = float((new_i[valid] / (new_u[valid] + 1e-8)).mean())
                if est < final:   # against the mIoU before this image's turn
                    selected[idx], run_i, run_u = attack, new_i, new_u
            final = _sea_miou(run_i, run_u)
        if prev_best - final <= SEA_MIN_GAIN:
            break
        prev_best = final
    return selected


class GreedyWorstCase(BaseMetric):
    """The greedy worst case for mIoU of an ensemble's members (module
    docstring), evaluated with the wrapped metric: keys
    ``advr_greedy/mIoU``..., ``advr_greedy/images_<member>`` (how many images
    took each member) and ``advr_greedy/by_greedy`` (1 when the rule's
    choice was kept, 0 when a member on every image was lower). Its
    per-image results are each member's own result and the image-wise
    winner; a part of :class:`~mmdag.evaluation.AttackMetric`, which feeds it.

    Args:
        variants (Sequence[str]): the members' variants (``advr[PGD]``...).
        names (Sequence[str]): the members' names, in the same order.
        evaluator (BaseMetric): a wrapped metric whose ``compute_metrics``
            evaluates the chosen results.
        prefix (str): the keys' prefix (``advr_greedy``).
        collect_device (str): 'cpu' or 'gpu'. Defaults to 'cpu'.
        rule (str): the greedy rule, ``'mmdag'`` or ``'sea'`` (module
            docstring). Defaults to 'mmdag'.
    """

    def __init__(self, variants: Sequence[str], names: Sequence[str], evaluator: BaseMetric,
                 prefix: str, collect_device: str = 'cpu', rule: str = 'mmdag') -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        if rule not in GREEDY_RULES:
            raise ValueError(f'greedy_rule must be one of {GREEDY_RULES}, got {rule!r}')
        self.variants, self.names, self.evaluator = list(variants), list(names), evaluator
        self.rule = rule

    def add(self, member_results: List[list], winners: List[Optional[str]]) -> None:
        """One batch: ``member_results[k][i]`` is member k's result on image i."""
        for i, winner in enumerate(winners):
            self.results.append(dict(
                members=[r[i] for r in member_results],
                winner=self.names.index(winner) if winner in self.names else 0))

    def process(self, data_batch, data_samples) -> None:   # fed by AttackMetric.process
        pass

    @staticmethod
    def _areas(results: list) -> Optional[tuple]:
        """``(inter, union)`` ``[N, K, C]`` of the results; None for a metric
        other than an IoU metric."""
        areas = [[iou_areas(m) for m in r['members']] for r in results]
        if not areas or any(a is None for row in areas for a in row):
            return None
        return (np.stack([[a[0] for a in row] for row in areas]),
                np.stack([[a[1] for a in row] for row in areas]))

    def choose(self, results: list) -> Optional[tuple]:
        """``(choice, by_greedy)``: the member per image and whether the
        rule's choice was kept; None for a metric other than an IoU metric."""
        areas = self._areas(results)
        if areas is None:
            return None
        inter, union = areas
        if self.rule == 'sea':
            greedy = sea_miou_choice(inter, union)
        else:
            greedy = greedy_miou_choice(inter, union, [r['winner'] for r in results])
        choice = _lowest(inter, union, greedy)
        return choice, int(choice == greedy)

    def compute_metrics(self, results: list) -> dict:
        chosen = self.choose(results)
        if chosen is None:
            return {}   # not an IoU metric: no greedy selection
        choice, by_greedy = chosen
        out = self.evaluator.compute_metrics([r['members'][k] for r, k in zip(results, choice)])
        out.update({f'images_{n}': sum(c == j for c in choice) for j, n in enumerate(self.names)})
        out['by_greedy'] = by_greedy
        return out


class AccuracyWorstCase(GreedyWorstCase):
    """The worst case for accuracy of an ensemble's members: per image the
    member with the fewest labelled pixels correct (module docstring),
    evaluated with the wrapped metric: keys ``advr_acc/aAcc``... and
    ``advr_acc/images_<member>``. Fed as :class:`GreedyWorstCase` is.

    Args:
        variants, names, evaluator, collect_device: as :class:`GreedyWorstCase`.
        prefix (str): the keys' prefix (``advr_acc``).
    """

    def __init__(self, variants: Sequence[str], names: Sequence[str], evaluator: BaseMetric,
                 prefix: str, collect_device: str = 'cpu') -> None:
        super().__init__(variants, names, evaluator, prefix, collect_device)

    def choose(self, results: list) -> Optional[tuple]:
        """``(choice, None)``; None for a metric other than an IoU metric."""
        areas = self._areas(results)
        if areas is None:
            return None
        # an image's correct labelled pixels: the sum of its intersections
        correct = areas[0].sum(-1)
        return accuracy_choice(correct, [r['winner'] for r in results]), None

    def compute_metrics(self, results: list) -> dict:
        out = super().compute_metrics(results)
        out.pop('by_greedy', None)
        return out
