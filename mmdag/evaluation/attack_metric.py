"""AttackMetric: one stock metric evaluated on ORIG, ADVR and PERM in one pass."""
import copy
from typing import Optional, Sequence

import numpy as np
from mmengine.dist import broadcast_object_list, collect_results, is_main_process
from mmengine.evaluator import BaseMetric

from mmdag.contract import (DET_WORST_VARIANT, ERRORS_PREFIX, GREEDY_VARIANT, NOT_ATTACKED,
                            STATS_FIELD, STATS_PREFIX, SWEEP_STATS_FIELD, TIDE_PREFIX, VARIANTS,
                            VARIANTS_FIELD, epsilon_label, member_variant, swept, variant_parts)
from mmdag.errors import MMDagError
from mmdag.registry import METRICS
from .det_errors import (DetectionErrors, DetectionTide, DetectionWorstCase, headline,
                         sample_breakdown)
from .greedy import GREEDY_RULES, AccuracyWorstCase, GreedyWorstCase
from .tide import sample_tide

_ATTACK_FIELDS = (VARIANTS_FIELD, STATS_FIELD, SWEEP_STATS_FIELD)

#: The worst case of an ensemble's members for accuracy: per image the
#: member with the fewest labelled pixels correct (:mod:`mmdag.evaluation.greedy`).
ACC_VARIANT = 'advr_acc'
#: An ensemble's ADVR as the test loop predicts it: the attack's own
#: per-image winners (the images saved and drawn), before the headline
#: keys ``advr/...`` take the worst-case figures.
WINNER_VARIANT = 'advr_winner'
#: What each selection of an ensemble's figures is (the report's ``headline``).
SELECTIONS = {
    ACC_VARIANT: 'per image, the member whose prediction leaves the fewest labelled pixels '
                 "correct (SEA's accuracy selection); at or below every member's aAcc",
    GREEDY_VARIANT: 'per image, greedy for mIoU over the members (greedy_rule), or one member '
                    'on every image where that is lower; at or below every member',
    DET_WORST_VARIANT: 'per image, the member whose prediction leaves the fewest objects '
                       'found, or one member on every image where that is lower; at or below '
                       'every member',
    WINNER_VARIANT: "the attack's own per-image winners (WorstCase's criterion), the images "
                    'the hooks save and draw',
    'member': 'one member on every image (lower than the selection by float rounding only)',
}


def _row(metrics: dict, head: str) -> dict:
    """The figures of one variant ``head`` (``advr_greedy@0.5/dice``): ``{name: value}``."""
    start = head + '/'
    return {k[len(start):]: v for k, v in metrics.items() if k.startswith(start)}


def worst_headlines(metrics: dict, level: Optional[float], members: Sequence[str],
                    inner: str = '') -> dict:
    """Make the headline keys of ADVR at one epsilon (``level``; None: the
    unmarked keys) the worst case over an ensemble's ``members`` (their
    names), in place: each ``advr/<name>`` moves to ``advr_winner/<name>``
    and takes the value of its selection: ``aAcc`` from ``advr_acc``, the
    other figures from ``advr_greedy`` (segmentation, the selection with
    the lowest mIoU) or ``advr_worst`` (detection, the lowest mAP), or from a
    member on every image where that member's reported figure is lower.
    ``inner`` is the wrapped metric's own prefix (``'/dice'``).

    Returns:
        dict: ``{headline key: the variant whose figure it is}``.
    """
    loop = swept('advr', level) + inner
    old = _row(metrics, loop)
    rows = {v: _row(metrics, swept(v, level) + inner)
            for v in (ACC_VARIANT, GREEDY_VARIANT, DET_WORST_VARIANT)}
    rows = {v: r for v, r in rows.items() if r}
    member_rows = {swept(member_variant(n), level) + inner: _row(metrics, swept(
        member_variant(n), level) + inner) for n in members}
    if not old or not rows:
        return {}
    segmentation = ACC_VARIANT in rows or GREEDY_VARIANT in rows

    def lowest(first: list, key: str) -> tuple:
        pool = [(v, rows[v]) for v in first if v in rows][:1] + list(member_rows.items())
        pool = [(v, r) for v, r in pool if key in r]
        return min(pool, key=lambda p: float(p[1][key])) if pool else (None, {})

    if segmentation:
        main = lowest([GREEDY_VARIANT, ACC_VARIANT], 'mIoU' if 'mIoU' in old else next(iter(old)))
        acc = lowest([ACC_VARIANT, GREEDY_VARIANT], 'aAcc')
    else:
        main = lowest([DET_WORST_VARIANT], headline(old) or next(iter(old)))
        acc = (None, {})
    sources = {}
    for name, value in old.items():
        source, row = acc if name == 'aAcc' and acc[0] else main
        if source is None or name not in row:
            continue
        metrics[swept(WINNER_VARIANT, level) + inner + '/' + name] = value
        metrics[loop + '/' + name] = row[name]
        sources[loop + '/' + name] = source
    return sources


def attack_statistics(results: list) -> dict:
    """The attack statistics of per-image stats dicts (see :class:`AttackMetric`)."""
    # images whose logits became NaN / inf have no decision to count: they
    # are reported apart and left out of every mean (never as flipped)
    # and images with no target correct on the clean image have nothing to flip
    apart = NOT_ATTACKED
    attacked = [r for r in results if r['status'] not in apart]
    out = dict(images=len(results), **{k: sum(r['status'] == k for r in results)
                                       for k in apart})
    if attacked:
        out.update(
            iters=float(np.mean([r['iters'] for r in attacked])),
            p=float(np.mean([r['p'] for r in attacked])),
            linf=float(np.mean([r['linf'] for r in attacked])),
            success=float(np.mean([r['converged'] for r in attacked])),
            target_success=float(np.mean([1 - r['correct_frac'] for r in attacked])))
    return out


class _SweepStats(BaseMetric):
    """The attack statistics at one epsilon of a sweep (not the largest),
    keys ``attack@<epsilon>/...``: read from the samples' sweep field."""

    def __init__(self, epsilon: float, collect_device: str = 'cpu',
                 prefix: str = STATS_PREFIX) -> None:
        super().__init__(collect_device=collect_device, prefix=swept(prefix, epsilon))
        self.label = epsilon_label(epsilon)

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for s in data_samples:
            stats = (s.get(SWEEP_STATS_FIELD) or {}).get(self.label)
            if stats is None:
                raise MMDagError(f'AttackMetric found no attack statistics at epsilon '
                                 f'{self.label}: '
                                 'the AttackHook and the metric disagree on the sweep')
            self.results.append(dict(stats))

    def compute_metrics(self, results: list) -> dict:
        return attack_statistics(results)


@METRICS.register_module()
class AttackMetric(BaseMetric):
    """Wrap any metric (mmseg ``IoUMetric``, mmdet ``VOCMetric``...) per variant.

    Each variant gets its own instance of the wrapped metric (prefix = the
    variant name, so keys read ``advr/mIoU``, or ``advr/<prefix>/mIoU`` when
    the wrapped metric has its own prefix); predictions of ``orig`` and
    ``perm`` come from :class:`mmdag.engine.AttackHook`, ``advr`` is what
    the test loop itself predicted. The attack statistics are reported as
    ``attack/iters`` (mean updates), ``attack/p`` (mean perceptibility), ``attack/linf``
    (mean L-inf, 0..255), ``attack/success`` (fraction of attacked images whose
    active set emptied), ``attack/target_success`` (mean fraction of targets
    flipped), ``attack/images`` and ``attack/no_targets``.

    ``advr_uint8`` is ADVR rounded to 8 bits inside the budget (the
    deployable figure). In an epsilon sweep (the hook's ``epsilons``) the
    unmarked keys are the largest epsilon's (what the loop predicts) and
    every other epsilon adds its own: ``advr@0.5/mIoU``, ``perm@0.5/mIoU``,
    ``advr_uint8@0.5/mIoU``, ``attack@0.5/linf``...

    **The worst case's headline.** With an ensemble attack, each headline
    figure of ADVR (``advr/...``, and ``advr@0.5/...`` at each epsilon of a
    sweep) is at or below every member's own (``advr[PGD]/...``), each from
    its own selection over the members' predictions (:func:`worst_headlines`,
    :data:`SELECTIONS`): a segmentor's ``aAcc`` from the accuracy selection
    (``advr_acc/...``: per image the member with the fewest labelled pixels
    correct, SEA's), its mIoU and other figures from the greedy mIoU
    selection (``advr_greedy/...``); a detector's mAP and other figures from
    the detection worst case (``advr_worst/...``). What the test loop
    predicted, the attack's own per-image winners (the images the hooks
    save and draw), moves to ``advr_winner/...``; ``headline_sources`` says,
    after :meth:`evaluate`, which selection gave each headline key.

    Args:
        metric (dict): config of the wrapped metric, built in the default
            scope (e.g. ``dict(type='IoUMetric', iou_metrics=['mIoU'])``).
        variants (Sequence[str], optional): which variants to evaluate, out
            of orig / advr / perm / advr_uint8 (and ``advr@0.5``... in a
            sweep). Defaults to None: every variant the attack hook predicts
            (it says which before the first batch, :meth:`configure`).
        output_dir / keep_results / format_only: passed to the ``advr``
            metric only (what mmseg's ``tools/test.py --out`` sets).
        greedy (bool): with an ensemble attack (``WorstCase``) and an IoU
            metric, also report the worst case chosen per image greedily
            for mIoU over the members' own predictions
            (:mod:`mmdag.evaluation.greedy`): ``advr_greedy/mIoU``... and how
            many images took each member (``advr_greedy/images_PGD``...).
            Without it, the headline mIoU is the lowest of the accuracy
            selection's and each member's. Defaults to True.
        greedy_rule (str): the greedy selection's rule, ``'mmdag'`` or
            ``'sea'`` (SEA's order and acceptance rule, transcribed from its
            ``tools/worse_only.py``; :mod:`mmdag.evaluation.greedy` states
            the difference). Defaults to 'mmdag'.
        score_thr (float): detectors: the score above which a detection
            counts in the error breakdown and the detection worst case
            (:mod:`mmdag.evaluation.det_errors`): keys ``errors/advr/missed``,
            ``errors/orig/fabricated``... (also by object size for the
            unmarked variants) and, with an ensemble attack, the worst case
            per image by fewest objects found, ``advr_worst/mAP``,
            ``advr_worst/images_PGD``, ``advr_worst/errors/missed``...
            Defaults to 0.3 (mmdet's visualisation threshold; the zoo's
            test-time 0.05 keeps boxes for ranking, not as detections).
        errors (bool): detectors: report the error breakdown, and TIDE's
            (:mod:`mmdag.evaluation.tide`: per unmarked variant, the AP each
            error type costs, keys ``tide/advr/dAP/cls``...; every detection
            counted, no score threshold). The boxes are matched as the
            wrapped metric matches them: with mmdet 1.x's +1 pixel for
            mmdet's ``VOCMetric``. Defaults to True.
        with_stats (bool): report the attack statistics. Set False on all
            but one ``AttackMetric`` of a multi-metric evaluator (the keys would
            clash). Defaults to True.
        collect_device (str): 'cpu' or 'gpu'. Defaults to 'cpu'.
        prefix (str, optional): prefix of the statistics. Defaults to 'attack'.
    """
    default_prefix = STATS_PREFIX

    def __init__(self, metric: dict, variants: Optional[Sequence[str]] = None,
                 with_stats: bool = True, collect_device: str = 'cpu',
                 prefix: Optional[str] = None, greedy: bool = True, score_thr: float = 0.3,
                 errors: bool = True, greedy_rule: str = 'mmdag', **advr_only) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        if greedy_rule not in GREEDY_RULES:
            raise ValueError(f'greedy_rule must be one of {GREEDY_RULES}, got {greedy_rule!r}')
        self.with_stats = with_stats
        self.greedy = bool(greedy)
        self.greedy_rule = greedy_rule
        self.score_thr = float(score_thr)
        self.errors = bool(errors)
        #: the greedy worst case for mIoU of an ensemble's members, per epsilon
        self.greedy_parts: dict = {}
        #: the worst case for accuracy of an ensemble's members, per epsilon
        self.acc_parts: dict = {}
        #: after evaluate: which selection gave each headline key
        self.headline_sources: dict = {}
        #: per epsilon, the ensemble's members' names
        self._members: dict = {}
        #: detectors: the worst case by fewest objects found, per epsilon
        #: (with its members' variants), and the error breakdown
        self.worst_parts: dict = {}
        self.error_part: Optional[DetectionErrors] = None
        self.tide_part: Optional[DetectionTide] = None
        #: boxes matched with mmdet 1.x's +1 pixel, as VOCMetric matches them
        self.legacy_boxes = 'VOCMetric' in str(metric.get('type', ''))
        if variants is not None:
            bad = {v for v in variants if variant_parts(v)[0] not in VARIANTS}
            if bad:
                raise ValueError(f'unknown variants {sorted(bad)}; choose from {VARIANTS} '
                                 "(at one epsilon of a sweep: 'advr@0.5'; an ensemble "
                                 "member's: 'advr[PGD]')")
        self.requested = None if variants is None else tuple(variants)
        self._metric_cfg = copy.deepcopy(dict(metric))
        self._advr_only = advr_only
        self._dataset_meta = None
        self.metrics: dict = {}
        #: the attack statistics at each epsilon of a sweep but the largest
        self.sweep_stats: dict = {}
        # until the attack hook says what it predicts (configure): these
        self._build(self.requested or ('orig', 'advr', 'perm'))
        self._restored: Optional[dict] = None
        self._live_indices: Optional[list] = None

    def _build(self, variants: Sequence[str]) -> None:
        built = {}
        for v in variants:
            if v in self.metrics:
                built[v] = self.metrics[v]
                continue
            cfg = copy.deepcopy(self._metric_cfg)
            # a metric's own prefix (needed when an evaluator lists two of a
            # kind) stays inside the variant's: advr/dice/mDice
            inner = cfg.get('prefix', None)
            cfg.update(prefix=f'{v}/{inner}' if inner else v, collect_device=self.collect_device)
            if v == 'advr':
                cfg.update({k: val for k, val in self._advr_only.items() if val is not None})
            built[v] = METRICS.build(cfg)
            if self._dataset_meta is not None:
                built[v].dataset_meta = self._dataset_meta
        self.metrics = built

    def configure(self, made: Sequence[str], epsilons: Sequence[float] = ()) -> None:
        """What the attack hook predicts (:class:`mmdag.engine.AttackHook`
        calls this before the first batch): ``made``, the variants it
        attaches (``advr`` is the loop's prediction; ``advr@0.5``... at the
        other epsilons of a sweep), and ``epsilons``, those other epsilons.
        The metric evaluates what it was asked for (``variants``), or all of
        ``made``."""
        if self.requested is not None:
            missing = [v for v in self.requested if v not in made]
            if missing:
                raise MMDagError(
                    f'AttackMetric(variants=...) asks for {missing}, which the AttackHook does '
                    f'not predict (it makes {list(made)}): add them to the hook\'s variants or '
                    'epsilons, or leave the metric\'s variants unset')
        self._build(self.requested or tuple(made))
        self.sweep_stats = {e: _SweepStats(e, self.collect_device, self.prefix)
                            for e in epsilons} if self.with_stats else {}
        self.greedy_parts, self.worst_parts, self.acc_parts = {}, {}, {}
        self._members = {}
        parts = {v: variant_parts(v) for v in self.metrics}
        # a metric's own prefix stays inside, as the variants' do
        inner = self._metric_cfg.get('prefix', None)
        inner = f'/{inner}' if inner else ''
        for level in [None, *epsilons]:
            members = [(v, member) for v, (_, member, eps) in parts.items()
                       if member and eps == level]
            loop = swept('advr', level)
            if len(members) < 2 or loop not in self.metrics:
                continue
            variants, names = [v for v, _ in members], [n for _, n in members]
            self._members[level] = names
            if self.greedy:
                self.greedy_parts[level] = GreedyWorstCase(
                    variants, names, self.metrics[loop], swept(GREEDY_VARIANT, level) + inner,
                    self.collect_device, rule=self.greedy_rule)
            self.acc_parts[level] = AccuracyWorstCase(
                variants, names, self.metrics[loop], swept(ACC_VARIANT, level) + inner,
                self.collect_device)
            self.worst_parts[level] = (variants, DetectionWorstCase(
                names, self.metrics[loop], swept(DET_WORST_VARIANT, level) + inner,
                self.collect_device))
        broken = [v for v, (base, _, _) in parts.items() if base in ('orig', 'advr')]
        unmarked = [v for v in broken if parts[v][2] is None]
        self.error_part = DetectionErrors(
            broken, unmarked, self.score_thr, self.collect_device,
            ERRORS_PREFIX) if self.errors else None
        self.tide_part = DetectionTide(
            unmarked, self.collect_device, TIDE_PREFIX) if self.errors and unmarked else None

    @property
    def dataset_meta(self) -> Optional[dict]:
        return self._dataset_meta

    @dataset_meta.setter
    def dataset_meta(self, meta: dict) -> None:
        self._dataset_meta = meta
        for m in self.metrics.values():
            m.dataset_meta = meta
        for m in getattr(self, 'sweep_stats', {}).values():
            m.dataset_meta = meta

    @staticmethod
    def _variant(sample: dict, variant: str) -> dict:
        if STATS_FIELD not in sample:
            raise MMDagError('AttackMetric found no attack results on the data samples: add '
                             "dict(type='mmdag.AttackHook') to custom_hooks "
                             "(or run tools/test.py with --attack dag).")
        out = {k: v for k, v in sample.items() if k not in _ATTACK_FIELDS}
        if variant != 'advr':   # the loop's own prediction
            preds = sample[VARIANTS_FIELD].get(variant)
            if preds is None:
                raise MMDagError(f"AttackMetric needs the '{variant}' predictions: add it to the "
                                 "AttackHook's variants.")
            out.update(preds)
        return out

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for v, metric in self.metrics.items():
            metric.process(data_batch, [self._variant(s, v) for s in data_samples])
        n = len(data_samples)

        def winners(level):
            return [(s[STATS_FIELD] if level is None else
                     s[SWEEP_STATS_FIELD][epsilon_label(level)]).get('winner')
                    for s in data_samples]

        for level, part in [*self.greedy_parts.items(), *self.acc_parts.items()]:
            part.add([self.metrics[v].results[-n:] for v in part.variants], winners(level))
        if self.error_part or self.worst_parts:
            # a detector: what each variant broke, and the worst case by it
            # (one result per image, None when the model is not a detector)
            need = set(self.error_part.variants if self.error_part else [])
            need.update(v for variants, _ in self.worst_parts.values() for v in variants)
            detector = bool(data_samples) and sample_breakdown(
                self._variant(data_samples[0], 'advr')) is not None
            rows = {v: [sample_breakdown(self._variant(s, v), self.score_thr, self.legacy_boxes)
                        if detector else None for s in data_samples] for v in need}
            if self.tide_part is not None:
                self.tide_part.add({v: [sample_tide(self._variant(s, v)) if detector else None
                                        for s in data_samples]
                                    for v in self.tide_part.variants})
            if self.error_part is not None:
                self.error_part.add({v: rows[v] for v in self.error_part.variants})
            for level, (variants, part) in self.worst_parts.items():
                part.add([self.metrics[v].results[-n:] for v in variants],
                         [rows[v] for v in variants], winners(level))
        if self.with_stats:
            self.results.extend(dict(s[STATS_FIELD]) for s in data_samples)
            for stats in self.sweep_stats.values():
                stats.process(data_batch, data_samples)

    def compute_metrics(self, results: list) -> dict:
        return attack_statistics(results)

    # ------------------------------------------------------------ resuming
    def _parts(self) -> list:
        """``(key, metric)`` of every part with per-image results: each
        variant's wrapped metric, the statistics (``'_stats'``) and those at
        each other epsilon of a sweep (``'_stats@0.5'``)."""
        parts = list(self.metrics.items())
        parts += [(swept(GREEDY_VARIANT, e), m) for e, m in self.greedy_parts.items()]
        parts += [(swept(ACC_VARIANT, e), m) for e, m in self.acc_parts.items()]
        parts += [(swept(DET_WORST_VARIANT, e), m) for e, (_, m) in self.worst_parts.items()]
        if self.error_part is not None:
            parts.append((ERRORS_PREFIX, self.error_part))
        if self.tide_part is not None:
            parts.append((TIDE_PREFIX, self.tide_part))
        if self.with_stats:
            parts.append(('_stats', self))
            parts += [(swept('_stats', e), m) for e, m in self.sweep_stats.items()]
        return parts

    def result_lists(self) -> dict:
        """The per-image result lists of every part (:meth:`_parts`)."""
        return {k: (m.results if m is not self else self.results) for k, m in self._parts()}

    def restore(self, restored: dict, live_indices: list) -> None:
        """Results of images finished by an earlier run, merged in at
        :meth:`evaluate`: ``restored[key]`` is a list of ``(test-set index,
        result)`` per key of :meth:`result_lists`; ``live_indices`` are the
        test-set indices of the images this run does, in its order."""
        self._restored = restored
        self._live_indices = list(live_indices)

    def evaluate(self, size: int) -> dict:
        metrics = {}
        if self._restored is not None:
            for key, metric in self._parts():
                if key not in self._restored and self._restored and (
                        key.startswith(ACC_VARIANT) or key == TIDE_PREFIX):
                    # a state written before this part existed: its images are
                    # missing, so no figure (the headline aAcc is then the
                    # greedy's; TIDE's breakdown is left out of the report)
                    metric.results.clear()
                    continue
                metrics.update(self._evaluate_merged(metric, size, self._restored.get(key, [])))
        else:
            # every inner metric gathers across ranks: call each on every rank
            for _, m in self._parts():
                metrics.update(super().evaluate(size) if m is self else m.evaluate(size))
        return self._headlines(metrics)

    def _headlines(self, metrics: dict) -> dict:
        """The worst case's headline keys (class docstring), in place."""
        inner = self._metric_cfg.get('prefix', None)
        inner = f'/{inner}' if inner else ''
        self.headline_sources = {}
        for level, names in self._members.items():
            self.headline_sources.update(worst_headlines(metrics, level, names, inner))
            # the breakdowns of the loop's images (the attack's per-image
            # winners) are not the headline's: they move beside its figures
            # to advr_winner; the headline's own counts are advr_worst/errors/
            for head in (ERRORS_PREFIX, TIDE_PREFIX):
                old = f'{head}/{swept("advr", level)}/'
                new = f'{head}/{swept(WINNER_VARIANT, level)}/'
                for key in [k for k in metrics if k.startswith(old)]:
                    metrics[new + key[len(old):]] = metrics.pop(key)
        return metrics

    def _evaluate_merged(self, metric: BaseMetric, size: int, restored: list) -> dict:
        """``BaseMetric.evaluate`` of ``metric`` on the restored results plus
        this run's, in test-set order (the order of an uninterrupted run)."""
        from mmengine.evaluator.metric import _to_cpu
        live = collect_results(metric.results, size, metric.collect_device)
        out = [None]
        if is_main_process():
            pairs = list(restored) + list(zip(self._live_indices, _to_cpu(live)))
            pairs.sort(key=lambda p: p[0])
            values = metric.compute_metrics([r for _, r in pairs])
            if metric.prefix:
                values = {'/'.join((metric.prefix, k)): v for k, v in values.items()}
            out = [values]
        broadcast_object_list(out)
        metric.results.clear()
        return out[0]
