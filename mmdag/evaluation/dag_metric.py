"""DAGMetric: one stock metric evaluated on ORIG, ADVR and PERM in one pass."""
import copy
from typing import Optional, Sequence

import numpy as np
from mmengine.dist import broadcast_object_list, collect_results, is_main_process
from mmengine.evaluator import BaseMetric

from mmdag.contract import NOT_ATTACKED, STATS_FIELD, VARIANTS, VARIANTS_FIELD
from mmdag.errors import MMDagError
from mmdag.registry import METRICS

_DAG_FIELDS = (VARIANTS_FIELD, STATS_FIELD)


@METRICS.register_module()
class DAGMetric(BaseMetric):
    """Wrap any metric (mmseg ``IoUMetric``, mmdet ``VOCMetric``...) per variant.

    Each variant gets its own instance of the wrapped metric (prefix = the
    variant name, so keys read ``advr/mIoU``, or ``advr/<prefix>/mIoU`` when
    the wrapped metric has its own prefix); predictions of ``orig`` and
    ``perm`` come from :class:`mmdag.engine.DAGAttackHook`, ``advr`` is what
    the test loop itself predicted. The attack statistics are reported as
    ``dag/iters`` (mean updates), ``dag/p`` (mean perceptibility), ``dag/linf``
    (mean L-inf, 0..255), ``dag/success`` (fraction of attacked images whose
    active set emptied), ``dag/target_success`` (mean fraction of targets
    flipped), ``dag/images`` and ``dag/no_targets``.

    Args:
        metric (dict): config of the wrapped metric, built in the default
            scope (e.g. ``dict(type='IoUMetric', iou_metrics=['mIoU'])``).
        variants (Sequence[str]): which of orig / advr / perm to evaluate.
            Defaults to all three.
        output_dir / keep_results / format_only: passed to the ``advr``
            metric only (what mmseg's ``tools/test.py --out`` sets).
        with_stats (bool): report the attack statistics. Set False on all
            but one ``DAGMetric`` of a multi-metric evaluator (the keys would
            clash). Defaults to True.
        collect_device (str): 'cpu' or 'gpu'. Defaults to 'cpu'.
        prefix (str, optional): prefix of the statistics. Defaults to 'dag'.
    """
    default_prefix = 'dag'

    def __init__(self, metric: dict, variants: Sequence[str] = VARIANTS,
                 with_stats: bool = True, collect_device: str = 'cpu',
                 prefix: Optional[str] = None, **advr_only) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.with_stats = with_stats
        bad = set(variants) - set(VARIANTS)
        if bad:
            raise ValueError(f'unknown variants {sorted(bad)}; choose from {VARIANTS}')
        self.metrics = {}
        for v in variants:
            cfg = copy.deepcopy(dict(metric))
            # a metric's own prefix (needed when an evaluator lists two of a
            # kind) stays inside the variant's: advr/dice/mDice
            inner = cfg.get('prefix', None)
            cfg.update(prefix=f'{v}/{inner}' if inner else v, collect_device=collect_device)
            if v == 'advr':
                cfg.update({k: val for k, val in advr_only.items() if val is not None})
            self.metrics[v] = METRICS.build(cfg)
        self._restored: Optional[dict] = None
        self._live_indices: Optional[list] = None

    @property
    def dataset_meta(self) -> Optional[dict]:
        return self._dataset_meta

    @dataset_meta.setter
    def dataset_meta(self, meta: dict) -> None:
        self._dataset_meta = meta
        for m in self.metrics.values():
            m.dataset_meta = meta

    @staticmethod
    def _variant(sample: dict, variant: str) -> dict:
        if STATS_FIELD not in sample:
            raise MMDagError('DAGMetric found no attack results on the data samples: add '
                               "dict(type='mmdag.DAGAttackHook') to custom_hooks "
                               "(or run tools/test.py with --attack dag).")
        out = {k: v for k, v in sample.items() if k not in _DAG_FIELDS}
        if variant != 'advr':
            preds = sample[VARIANTS_FIELD].get(variant)
            if preds is None:
                raise MMDagError(f"DAGMetric needs the '{variant}' predictions: add it to the "
                                   "DAGAttackHook's variants.")
            out.update(preds)
        return out

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for v, metric in self.metrics.items():
            metric.process(data_batch, [self._variant(s, v) for s in data_samples])
        if self.with_stats:
            self.results.extend(dict(s[STATS_FIELD]) for s in data_samples)

    def compute_metrics(self, results: list) -> dict:
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

    # ------------------------------------------------------------ resuming
    def result_lists(self) -> dict:
        """The per-image result lists: each variant's wrapped metric and,
        under ``'_stats'``, the attack statistics."""
        lists = {v: m.results for v, m in self.metrics.items()}
        if self.with_stats:
            lists['_stats'] = self.results
        return lists

    def restore(self, restored: dict, live_indices: list) -> None:
        """Results of images finished by an earlier run, merged in at
        :meth:`evaluate`: ``restored[key]`` is a list of ``(test-set index,
        result)`` per key of :meth:`result_lists`; ``live_indices`` are the
        test-set indices of the images this run does, in its order."""
        self._restored = restored
        self._live_indices = list(live_indices)

    def evaluate(self, size: int) -> dict:
        if self._restored is not None:
            metrics = {}
            for key, metric in (list(self.metrics.items())
                                + ([('_stats', self)] if self.with_stats else [])):
                metrics.update(self._evaluate_merged(metric, size, self._restored.get(key, [])))
            return metrics
        # every inner metric gathers across ranks: call each on every rank
        metrics = {}
        for m in self.metrics.values():
            metrics.update(m.evaluate(size))
        if self.with_stats:
            metrics.update(super().evaluate(size))
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
