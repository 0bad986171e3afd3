"""Table-1-style text summary of attack runs, and the curve of an epsilon sweep.

The functions take a report's contents (:func:`read_report`) or its
``metrics``; the metric keys of a report written before 0.2 (``dag/linf``)
are read as today's (``attack/linf``, :func:`mmdag.contract.upgrade_keys`).
"""
import json
import os.path as osp
from typing import Dict, Optional, Sequence

from mmdag.contract import (CHOSEN_VARIANTS, REPORT_FILE, STATS_PREFIX, SWEPT_VARIANTS, swept,
                            upgrade_keys, variant_parts, work_path)

#: The paper's scale of perturbations (PAPER.md, "Measures"), for comparison.
PAPER_REFERENCE = ('paper (FCN/FR on VOC): ADVR a few %, PERM ~ORIG, p ~1e-3, L-inf < 10, '
                   '<= 200 iters')


def read_report(path: str) -> dict:
    """A run's report: ``path`` is the report file or the run's work dir (its
    :data:`~mmdag.contract.REPORT_FILE`, or the ``dag_report.json`` of a run
    before 0.2). The metric keys are today's (:func:`~mmdag.contract.upgrade_keys`).
    Raises OSError when there is no report, ValueError when it is not JSON."""
    if osp.isdir(path):
        path = work_path(path, REPORT_FILE)
    with open(path) as f:
        report = json.load(f)
    if isinstance(report, dict) and isinstance(report.get('metrics'), dict):
        report['metrics'] = upgrade_keys(report['metrics'])
    return report


def main_metric(metrics: dict) -> Optional[str]:
    """The headline metric name present for advr (mIoU, then mAP, then any)."""
    names = [k.split('/', 1)[1] for k in metrics if k.startswith('advr/')]
    for preferred in ('mIoU', 'mAP'):
        for n in names:
            if n == preferred or n.endswith('/' + preferred):
                return n
    return names[0] if names else None


def format_table(rows: Dict[str, dict], reference: bool = True) -> str:
    """One line per run: metric (in %) on ORIG / ADVR / PERM and the attack
    statistics; with ``reference``, the paper's scale below (DAG's runs)."""
    header = (f"{'model':<40} {'metric':<8} {'ORIG':>7} {'ADVR':>7} {'PERM':>7} "
              f"{'iters':>7} {'p':>9} {'L-inf':>7} {'success':>8}")
    lines = [header, '-' * len(header)]
    for name, m in rows.items():
        m = upgrade_keys(m)
        metric = main_metric(m)
        if metric is None:
            continue
        scale = metric_scale(metric)

        def get(variant):
            v = m.get(f'{variant}/{metric}')
            return f'{scale * float(v):7.2f}' if v is not None else f"{'-':>7}"

        iters, p, linf, succ = (m.get(f'{STATS_PREFIX}/{k}')
                                for k in ('iters', 'p', 'linf', 'success'))
        lines.append(
            f'{name[:40]:<40} {metric.rsplit("/", 1)[-1]:<8} {get("orig")} {get("advr")} '
            f'{get("perm")} '
            + (f'{iters:7.1f} {p:9.2e} {linf:7.2f} {100 * succ:7.1f}%' if iters is not None
               else ''))
    if reference:
        lines.append(PAPER_REFERENCE)
    return '\n'.join(lines)


def metric_scale(metric: str) -> float:
    """100 for mmdet's AP metrics (reported as fractions), 1 for mmseg's (in %)."""
    return 100.0 if 'AP' in metric.rsplit('/', 1)[-1] else 1.0


def _label(report: dict) -> str:
    cfg = report.get('config') or '?'
    return osp.splitext(osp.basename(str(cfg)))[0]


def transfer_matrix(reports: Dict[str, dict], source_reports: Optional[Dict[str, dict]] = None):
    """Rows = where the perturbations were made, columns = where they were
    applied, cells = ORIG - ADVR of the headline metric (in %).

    Args:
        reports: reports' contents (:func:`read_report`) by path. A run with
            ``settings.transfer_from`` is a transfer run (its sources are the
            runs that wrote those directories, joined with ' + ' when
            several); any other run is the white-box attack of its model
            (a diagonal cell).
        source_reports: reports of the runs that saved perturbations, by the
            path of their ``perturbations`` directory (to name the sources);
            a source without one is named by its directory.

    Returns:
        tuple: (row labels, column labels, ``{(row, col): drop}``).
    """
    source_reports = source_reports or {}
    cells, rows, cols = {}, [], []
    for path, rep in reports.items():
        m = upgrade_keys(rep.get('metrics', {}))
        metric = main_metric(m)
        if metric is None:
            raise ValueError(f'{path}: no advr metric in the report')
        col = _label(rep)
        srcs = (rep.get('settings') or {}).get('transfer_from') or []
        if srcs:
            names = []
            for d in srcs:
                src = source_reports.get(osp.normpath(d))
                names.append(_label(src) if src else d)
            row = ' + '.join(names)
        else:
            row = col
        drop = metric_scale(metric) * (float(m[f'orig/{metric}']) - float(m[f'advr/{metric}']))
        cells[(row, col)] = drop
        rows += [row] if row not in rows else []
        cols += [col] if col not in cols else []
    return rows, cols, cells


def format_matrix(rows, cols, cells) -> str:
    """Markdown table of :func:`transfer_matrix`."""
    out = ['| made on \\ applied to | ' + ' | '.join(cols) + ' |',
           '|---|' + '---|' * len(cols)]
    for r in rows:
        vals = [f'{cells[(r, c)]:.2f}' if (r, c) in cells else '' for c in cols]
        out.append(f'| {r} | ' + ' | '.join(vals) + ' |')
    return '\n'.join(out)


def chosen_variants() -> Dict[str, str]:
    """The variants of an ensemble's selections over its members, with their
    labels: the contract's (greedy for mIoU, by objects found), the
    accuracy selection and the attack's own per-image winners (what the
    test loop predicted, before ADVR's headline became the worst case)."""
    from mmdag.evaluation.attack_metric import ACC_VARIANT, WINNER_VARIANT
    return {**CHOSEN_VARIANTS, ACC_VARIANT: 'worst case, fewest pixels correct',
            WINNER_VARIANT: "attack's per-image winners"}


#: The attack statistics a sweep's rows carry.
SWEEP_STATS = ('linf', 'p', 'iters', 'success', 'target_success', 'images')


def sweep_section(metrics: dict, epsilons: Sequence[float]) -> Optional[dict]:
    """The curve of an epsilon sweep from a run's metrics: per epsilon
    (smallest first) the headline metric of ADVR, ADVR rounded to 8 bits and
    PERM (in %, where the run has them), every metric of every variant, and
    the attack statistics. The unmarked keys are the largest epsilon's.
    None without a headline metric."""
    metrics = upgrade_keys(metrics)
    metric = main_metric(metrics)
    if metric is None or not epsilons:
        return None
    scale = metric_scale(metric)
    top = max(epsilons)
    rows = []
    for e in sorted(epsilons):
        level = None if e == top else e
        variants, values = {}, {}
        for v in (*SWEPT_VARIANTS, *chosen_variants()):
            head = swept(v, level) + '/'
            found = {k[len(head):]: x for k, x in metrics.items() if k.startswith(head)}
            if found:
                values[v] = found
                if metric in found:
                    variants[v] = round(scale * float(found[metric]), 4)
        stats_head = swept(STATS_PREFIX, level) + '/'
        attack = {k: metrics[stats_head + k] for k in SWEEP_STATS if stats_head + k in metrics}
        members = {n: round(scale * float(v), 4)
                   for n, v in member_values(metrics, metric, level).items()}
        rows.append(dict(epsilon=e, variants=variants, attack=attack, metrics=values,
                         **(dict(members=members) if members else {})))
    orig = metrics.get(f'orig/{metric}')
    return dict(epsilons=sorted(epsilons), metric=metric,
                metric_name=f"{metric.rsplit('/', 1)[-1]} (%)",
                orig=None if orig is None else round(scale * float(orig), 4), rows=rows)


def member_values(metrics: dict, metric: str, epsilon: Optional[float] = None) -> dict:
    """An ensemble's members' own ADVR of ``metric`` (unscaled), by member
    name, at ``epsilon`` of a sweep (None: the unmarked keys)."""
    out = {}
    for key, value in metrics.items():
        head, _, name = key.partition('/')
        base, member, eps = variant_parts(head)
        if base == 'advr' and member and eps == epsilon and name == metric:
            out[member] = value
    return out


def format_sweep(section: dict) -> str:
    """A sweep's curve as a markdown table: per epsilon, the headline metric
    of an ensemble's members (where the attack is one), of ADVR (the worst
    case of an ensemble, at or below every member: see
    :class:`~mmdag.evaluation.AttackMetric`), of the ensemble's selections
    (:func:`chosen_variants`), ADVR rounded to 8 bits and PERM (the attack's
    per-image winners' images, for an ensemble), the mean L-inf and the
    fraction of attacked targets flipped; ORIG in the heading line."""
    name = section['metric_name']

    def cell(v):
        return '-' if v is None else f'{v:.2f}'

    members = list(dict.fromkeys(n for r in section['rows'] for n in r.get('members', {})))
    labels = chosen_variants()
    chosen = [c for c in labels if any(c in r['variants'] for r in section['rows'])]
    worst = 'worst case' if members else ''
    lines = [f"ORIG {name}: {cell(section.get('orig'))}", '',
             '| epsilon (/255) | ' + ''.join(f'{n} | ' for n in members)
             + f'ADVR {name}{" (" + worst + ")" if worst else ""} | '
             + ''.join(f'{labels[c]} | ' for c in chosen)
             + 'ADVR 8-bit | PERM | mean L-inf | targets flipped |',
             '|---:|' + '---:|' * (len(members) + 5 + len(chosen))]
    for r in section['rows']:
        v, a = r['variants'], r['attack']
        flipped = a.get('target_success')
        lines.append(f"| {r['epsilon']:g} | "
                     + ''.join(f"{cell(r.get('members', {}).get(n))} | " for n in members)
                     + f"{cell(v.get('advr'))} | "
                     + ''.join(f"{cell(v.get(c))} | " for c in chosen)
                     + f"{cell(v.get('advr_uint8'))} "
                     f"| {cell(v.get('perm'))} | {cell(a.get('linf'))} | "
                     f"{'-' if flipped is None else f'{100 * flipped:.1f}%'} |")
    return '\n'.join(lines)


def error_section(metrics: dict) -> Optional[dict]:
    """The detection error breakdown of a run (:mod:`mmdag.evaluation.det_errors`)
    from its metrics: the objects (``gt``, by size), and per variant (``orig``,
    ``advr``, each member's ``advr[PGD]``, the worst case ``advr_worst``; at
    each epsilon of a sweep ``advr@2``...) the count of each kind, by size
    where the run split it, and whether the objects' kinds add up to ``gt``.
    None without a breakdown (segmentation)."""
    from mmdag.contract import DET_WORST_VARIANT, ERRORS_PREFIX
    from mmdag.evaluation.det_errors import KINDS, OBJECT_KINDS, SIZES
    head = ERRORS_PREFIX + '/'
    if head + 'gt' not in metrics:
        return None
    variants: Dict[str, dict] = {}
    for key, value in metrics.items():
        if key.startswith(head):
            variant, _, kind = key[len(head):].rpartition('/')
        else:
            first, _, rest = key.partition('/')
            if variant_parts(first)[0] != DET_WORST_VARIANT or not rest.startswith(head):
                continue
            variant, kind = first, rest[len(head):]
        if variant:
            variants.setdefault(variant, {})[kind] = int(value)
    gt = int(metrics[head + 'gt'])
    out = dict(score_thr=metrics.get(head + 'score_thr'), gt=gt,
               gt_by_size={s: int(metrics[f'{head}gt_{s}']) for s in SIZES
                           if f'{head}gt_{s}' in metrics}, variants={})
    for v, counts in variants.items():
        row = {k: counts[k] for k in KINDS if k in counts}
        sized = {s: {k: counts[f'{k}_{s}'] for k in KINDS if f'{k}_{s}' in counts}
                 for s in SIZES}
        if any(sized.values()):
            row['by_size'] = sized
        row['adds_up'] = sum(row.get(k, 0) for k in OBJECT_KINDS) == gt
        out['variants'][v] = row
    return out


def tide_section(metrics: dict) -> Optional[dict]:
    """TIDE's breakdown of a run (:mod:`mmdag.evaluation.tide`) from its
    metrics: per variant (``orig``, ``advr``, each member's ``advr[PGD]``),
    ``AP`` and ``dAP/<type>`` (AP points on the 0..100 scale) and
    ``count/<type>``. None without one (segmentation)."""
    from mmdag.contract import TIDE_PREFIX
    head = TIDE_PREFIX + '/'
    variants: Dict[str, dict] = {}
    for key, value in metrics.items():
        if not key.startswith(head):
            continue
        variant, _, name = key[len(head):].partition('/')
        if name:
            variants.setdefault(variant, {})[name] = value
    if not variants:
        return None
    return dict(what='TIDE (Bolya et al., ECCV 2020): the AP at IoU 0.5 over every detection '
                     '(COCO 101-point), and per error type the AP points fixing it gives back',
                variants=variants)


def format_tide(section: dict) -> str:
    """TIDE's breakdown as a markdown table: one row per variant."""
    from mmdag.evaluation.tide import ERRORS
    head = ['variant', 'AP', *(f'dAP {e}' for e in ERRORS), 'dAP FP', 'dAP FN']
    out = ['| ' + ' | '.join(head) + ' |', '|---|' + '---:|' * (len(head) - 1)]
    for v, row in section['variants'].items():
        cells = [v, row.get('AP'), *(row.get(f'dAP/{e}') for e in ERRORS),
                 row.get('dAP/fp'), row.get('dAP/fn')]
        out.append('| ' + ' | '.join(c if isinstance(c, str) else
                                     ('-' if c is None else f'{float(c):.2f}')
                                     for c in cells) + ' |')
    return '\n'.join(out)
