"""What an attack broke in a detector's output, per image, and the worst case
per image for detection.

**The error breakdown** (:func:`error_breakdown`) classifies, at a score
threshold, every ground-truth object of an image as exactly one of

- ``tp``: found, a detection of its class with IoU >= 0.5 (matched as VOC's
  ``tpfp_default`` matches: detections by score, each to the object of its
  class it overlaps most; :mod:`mmdag.evaluation.voc_matching`);
- ``wrong_class``: not found, but a detection of another class covers it
  (IoU >= 0.5);
- ``mislocalised``: not found, but a detection of its class that found no
  other object overlaps it (``bg_iou`` <= IoU < 0.5);
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

from mmengine.evaluator import BaseMetric

from .tide import tide_summary
from .voc_matching import OBJECT_KINDS, SIZES, voc_error_breakdown

__all__ = ['error_breakdown', 'sample_breakdown', 'record_errors', 'DetectionErrors',
           'DetectionTide', 'DetectionWorstCase', 'KINDS', 'SIZES']

#: the ground truth's classes (they add up to ``gt``), the background's, and
#: COCO's object sizes (area below 32^2, below 96^2, the rest): the counts
#: of :mod:`mmdag.evaluation.voc_matching`
KINDS = OBJECT_KINDS + ('fabricated',)


def error_breakdown(gt_boxes, gt_labels, det_boxes, det_labels, det_scores,
                    score_thr: float = 0.3, iou_thr: float = 0.5, bg_iou: float = 0.1,
                    ignore_boxes=None, ignore_labels=None,
                    use_legacy_coordinate: bool = False) -> Dict[str, int]:
    """The counts of one image (module docstring): ``gt`` and each of
    :data:`KINDS`, and ``<kind>_<size>`` for each of :data:`SIZES`, matched
    as VOC matches (:func:`~mmdag.evaluation.voc_matching.voc_error_breakdown`,
    which takes the same arguments)."""
    return voc_error_breakdown(gt_boxes, gt_labels, det_boxes, det_labels, det_scores,
                               score_thr, iou_thr, bg_iou, ignore_boxes, ignore_labels,
                               use_legacy_coordinate)


def sample_breakdown(sample, score_thr: float = 0.3,
                     legacy: bool = False) -> Optional[Dict[str, int]]:
    """:func:`error_breakdown` of a data sample (a dict, or a data element,
    with ``gt_instances``, ``pred_instances`` and, where the dataset marks
    some, ``ignored_instances``); None for a sample without boxes
    (segmentation). ``legacy``: boxes with mmdet 1.x's +1 pixel, as mmdet's
    ``VOCMetric`` matches them."""
    gt, pred = sample.get('gt_instances'), sample.get('pred_instances')
    if gt is None or pred is None or 'bboxes' not in pred or 'bboxes' not in gt:
        return None
    ignored = sample.get('ignored_instances')
    has_ignored = ignored is not None and 'bboxes' in ignored
    return error_breakdown(gt.get('bboxes'), gt.get('labels'), pred.get('bboxes'),
                           pred.get('labels'), pred.get('scores'), score_thr,
                           ignore_boxes=ignored.get('bboxes') if has_ignored else None,
                           ignore_labels=ignored.get('labels') if has_ignored else None,
                           use_legacy_coordinate=legacy)


def record_errors(sample, variants: dict, score_thr: float = 0.3,
                  legacy: bool = False) -> Optional[dict]:
    """An image's record of what each attack broke: ``gt`` and, per variant
    (the loop's ``advr`` from ``sample``, and ``orig`` and the members'
    ``advr[...]`` from ``variants``, ``{variant: prediction fields}``; not
    the other epsilons of a sweep), the count of each of :data:`KINDS`.
    None for a segmentor."""
    from mmdag.contract import variant_parts
    base = dict(gt_instances=sample.get('gt_instances'),
                ignored_instances=sample.get('ignored_instances'))
    advr = sample_breakdown(dict(base, pred_instances=sample.get('pred_instances')), score_thr,
                            legacy)
    if advr is None:
        return None
    rows = {'advr': advr}
    for v, preds in (variants or {}).items():
        kind, member, eps = variant_parts(v)
        if eps is None and (v == 'orig' or (kind == 'advr' and member)):
            row = sample_breakdown(dict(base, **preds), score_thr, legacy)
            if row is not None:
                rows[v] = row
    return dict(gt=advr['gt'], **{v: {k: r[k] for k in KINDS} for v, r in rows.items()})


def _total(rows: List[Dict[str, int]]) -> Dict[str, int]:
    out: Dict[str, int] = {}
    for row in rows:
        for k, v in row.items():
            out[k] = out.get(k, 0) + v
    return out


class _PerVariantPart(BaseMetric):
    """A part of :class:`~mmdag.evaluation.AttackMetric` that keeps, per image,
    one record per variant (``variants``), fed by :meth:`add` from
    ``AttackMetric.process``."""

    variants: list = []

    def add(self, per_variant: Dict[str, List[Optional[dict]]]) -> None:
        """One batch: ``per_variant[v][i]``, image i's breakdown of variant v."""
        n = len(next(iter(per_variant.values()), []))
        for i in range(n):
            self.results.append({v: per_variant[v][i] for v in self.variants})

    def process(self, data_batch, data_samples) -> None:   # fed by AttackMetric.process
        pass


class DetectionErrors(_PerVariantPart):
    """The error breakdown of some variants, summed over the images: keys
    ``errors/<variant>/<kind>`` (``errors/gt``: the objects), and with
    ``sizes`` ``errors/<variant>/<kind>_<size>``. A part of
    :class:`~mmdag.evaluation.AttackMetric`, which feeds it (per image, the
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


class DetectionTide(_PerVariantPart):
    """TIDE's breakdown (:mod:`mmdag.evaluation.tide`) of some variants over
    the images: keys ``tide/<variant>/AP``, ``tide/<variant>/dAP/<type>``
    (the AP points fixing each error type gives back) and
    ``tide/<variant>/count/<type>``. A part of
    :class:`~mmdag.evaluation.AttackMetric`, which feeds it (per image, each
    variant's :func:`~mmdag.evaluation.tide.sample_tide` record, every
    detection kept: TIDE counts no score threshold); nothing for
    segmentation.

    Args:
        variants (Sequence[str]): the variants broken down.
    """

    def __init__(self, variants: Sequence[str], collect_device: str = 'cpu',
                 prefix: str = 'tide') -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.variants = list(variants)

    def compute_metrics(self, results: list) -> dict:
        if not results or any(r[v] is None for r in results for v in self.variants):
            return {}
        out = {}
        for v in self.variants:
            out.update({f'{v}/{k}': value
                        for k, value in tide_summary([r[v] for r in results]).items()})
        return out


class DetectionWorstCase(BaseMetric):
    """The detection worst case of an ensemble's members (module docstring),
    evaluated with the wrapped metric; its breakdown goes in ``errors``.

    Its mAP is at or below every member's: the selection is the lowest among
    the per-image choice by objects found and each member on every image.
    :class:`~mmdag.evaluation.AttackMetric` reports its figures as ADVR's
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

    def process(self, data_batch, data_samples) -> None:   # fed by AttackMetric.process
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
