"""AttackReportHook: the per-image records and the run's report."""
import json
import os.path as osp
from dataclasses import asdict
from typing import Optional

from mmengine.dist import is_main_process
from mmengine.hooks import Hook

from mmdag.contract import (CHOSEN_VARIANTS, CURVE_FILE, ERRORS_FILE, ERRORS_PREFIX, RECORDS_FILE,
                            REPORT_FILE, STATS_PREFIX, TIDE_PREFIX, VARIANTS, VARIANTS_FIELD,
                            BatchAttack, CheckpointFit, RunAttack, variant_parts)
from mmdag.evaluation.attack_metric import ACC_VARIANT, SELECTIONS, WINNER_VARIANT
from mmdag.fileio import write_atomic
from mmdag.registry import HOOKS
from mmdag.summary import error_section, format_sweep, format_tide, sweep_section, tide_section
from .records import append_records, convergence, read_records, unique_records
from .wiring import attack_metrics, published

#: The ensemble's variants beside the contract's: the accuracy selection and
#: the attack's own per-image winners.
SELECTED = (ACC_VARIANT, WINNER_VARIANT)

#: How the report's attack statistics are counted.
COUNTED = ('iters, p, linf, success and target_success: means over the images with '
           'at least one target correct on the clean image and finite logits; '
           'target_success and success count only the targets correct on the clean '
           'image (no_targets, none_correct and non_finite images are counted apart)')


@HOOKS.register_module()
class AttackReportHook(Hook):
    """Append every image's record after its batch, and write the report
    after the test epoch.

    The records (:mod:`mmdag.engine.records`) come from
    :class:`~mmdag.engine.AttackHook` through the runner's message hub,
    as do the run's settings and environment; the report holds those, the
    metrics (ORIG / ADVR / PERM of :class:`~mmdag.evaluation.AttackMetric`
    and the attack statistics) and the convergence drawn from the records.

    With an ensemble attack, ADVR's headline figures are the worst case over
    its members, and the report's ``headline`` says, per key, which
    selection gave it (``advr_acc``, ``advr_greedy``, ``advr_worst`` or a
    member; the log says it too); ``variants.advr_winner`` holds the
    attack's own per-image winners, the images the hooks save and draw.

    Args:
        report (str, optional): report file name in the work dir, written by
            the main process; None writes none. Defaults to 'attack_report.json'.
        records (str, optional): per-image records file in the work dir,
            appended by every rank; None writes none. Defaults to
            'attack_records.jsonl'.
    """

    priority = 'VERY_LOW'   # as the attack hook's: after it, when it adds this hook

    def __init__(self, report: Optional[str] = REPORT_FILE,
                 records: Optional[str] = RECORDS_FILE) -> None:
        self.report = report
        self.records = records

    def records_path(self, runner) -> Optional[str]:
        return osp.join(runner.work_dir, self.records) if self.records else None

    def after_test_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        batch = published(runner.message_hub, BatchAttack)
        path = self.records_path(runner)
        if path and batch and batch.records:
            if outputs is not None and len(outputs) == len(batch.records):
                # a detector's record says what each variant broke
                from mmdag.evaluation.det_errors import record_errors
                thr, legacy = _score_thr(runner)
                for rec, out in zip(batch.records, outputs):
                    errors = record_errors(out, out.get(VARIANTS_FIELD), thr, legacy)
                    if errors is not None:
                        rec['errors'] = errors
            append_records(path, batch.records)

    def after_test_epoch(self, runner, metrics: Optional[dict] = None) -> None:
        if not self.report or not is_main_process():
            return
        metrics = metrics or {}
        variants, attack = {}, {}
        members = {}
        for key, value in metrics.items():
            head, _, name = key.partition('/')
            base, member, eps = variant_parts(head)
            if head in (ERRORS_PREFIX, TIDE_PREFIX) or name.startswith(ERRORS_PREFIX + '/'):
                continue   # the error breakdowns: their own sections
            if (head in VARIANTS or head in CHOSEN_VARIANTS or head in SELECTED) and name:
                variants.setdefault(head, {})[name] = value
            elif head == STATS_PREFIX and name:
                attack[name] = value
            elif base == 'advr' and member and eps is None and name:
                members.setdefault(member, {})[name] = value
        run = published(runner.message_hub, RunAttack)
        settings = run.settings if run is not None else None
        epsilons = ((settings or {}).get('attack') or {}).get('epsilons')
        fit = published(runner.message_hub, CheckpointFit)
        report = dict(
            variants=variants,
            attack=attack,
            counted=COUNTED,
            settings=settings,
            environment=run.environment if run is not None else None,
            config=getattr(runner.cfg, 'filename', None),
            checkpoint=runner.cfg.get('load_from'),
            checkpoint_fit=asdict(fit) if fit is not None else None,
            metrics=metrics)
        if members:   # an ensemble: each member's own ADVR beside the worst case's
            report['members'] = members
        sources = _headline_sources(runner)
        if sources:
            report['headline'] = sources
            runner.logger.info('worst case: ' + '; '.join(
                f"{k} from {v['selection']}" for k, v in sources.items()))
        errors = error_section(metrics)
        if errors:
            report['errors'] = self._errors(runner, errors)
        tide = tide_section(metrics)
        if tide:
            report['tide'] = self._tide(runner, tide)
        if epsilons:
            report['sweep'] = self._sweep(runner, metrics, epsilons)
        records_path = self.records_path(runner)
        if records_path:
            lines, skipped = read_records(records_path)
            records = unique_records(lines)
            report['convergence'] = convergence(records)
            report['records'] = dict(file=self.records, images=len(records),
                                     skipped_lines=skipped)
        path = osp.join(runner.work_dir, self.report)
        write_atomic(path, json.dumps(report, indent=2, default=_jsonable))
        runner.logger.info(f'mmdag: report written to {path}')

    def _errors(self, runner, section: dict) -> dict:
        """The report's ``errors`` with its picture ``attack_errors.png`` (the
        unmarked variants: the largest epsilon's) beside the report."""
        try:
            from mmdag.plotting import error_bars
            title = osp.splitext(osp.basename(str(getattr(runner.cfg, 'filename', '') or '')))[0]
            shown = dict(section, variants={v: r for v, r in section['variants'].items()
                                            if '@' not in v})
            path = error_bars(shown, osp.join(runner.work_dir, ERRORS_FILE), title)
            section['picture'] = osp.basename(path) if path else None
        except ImportError as e:   # no matplotlib: the counts still go in the report
            section['picture'] = None
            runner.logger.warning(f'mmdag: no error picture ({e})')
        return section

    def _tide(self, runner, section: dict) -> dict:
        """The report's ``tide`` (TIDE's AP and dAP per error type, per
        variant) with its picture ``tide_errors.png`` beside the report."""
        runner.logger.info("TIDE's errors (dAP: the AP points fixing each gives back):\n"
                           + format_tide(section))
        try:
            from mmdag.evaluation.tide_figure import tide_bars
            title = osp.splitext(osp.basename(str(getattr(runner.cfg, 'filename', '') or '')))[0]
            path = tide_bars(section['variants'], osp.join(runner.work_dir, 'tide_errors.png'),
                             title)
            section['picture'] = osp.basename(path) if path else None
        except ImportError as e:   # no matplotlib: the figures still go in the report
            section['picture'] = None
            runner.logger.warning(f'mmdag: no TIDE picture ({e})')
        return section

    def _sweep(self, runner, metrics: dict, epsilons: list) -> Optional[dict]:
        """The report's ``sweep``: the curve (rows, a markdown table) and its
        picture ``attack_curve.png`` beside the report."""
        section = sweep_section(metrics, epsilons)
        if section is None:
            return None
        section['table'] = format_sweep(section)
        try:
            from mmdag.plotting import sweep_curve
            title = osp.splitext(osp.basename(str(getattr(runner.cfg, 'filename', '') or '')))[0]
            path = sweep_curve(section, osp.join(runner.work_dir, CURVE_FILE), title)
            section['picture'] = osp.basename(path) if path else None
        except ImportError as e:   # no matplotlib: the table still goes in the report
            section['picture'] = None
            runner.logger.warning(f'mmdag: no sweep picture ({e})')
        runner.logger.info('epsilon sweep:\n' + section['table'])
        return section


def _headline_sources(runner) -> dict:
    """Which selection gave each worst-case headline key of the test
    evaluator's AttackMetric (:func:`mmdag.evaluation.attack_metric.worst_headlines`):
    ``{key: {selection, what}}``; empty without an ensemble."""
    out = {}
    for m in attack_metrics(runner):
        for key, source in m.headline_sources.items():
            base, member, _ = variant_parts(source)
            what = SELECTIONS['member'] if member else SELECTIONS.get(base, '')
            if base == 'advr_greedy' and m.greedy_rule:
                what += f" (greedy_rule='{m.greedy_rule}')"
            out[key] = dict(selection=source, what=what)
    return out


def _score_thr(runner) -> tuple:
    """The error breakdown's score threshold and box convention: the test
    evaluator's AttackMetric's (0.3 and plain boxes without one)."""
    for m in attack_metrics(runner):
        return float(m.score_thr), bool(m.legacy_boxes)
    return 0.3, False


def _jsonable(obj):
    if hasattr(obj, 'tolist'):
        return obj.tolist()
    return str(obj)
