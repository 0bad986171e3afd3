"""Table-1-style text summary of DAG runs."""
from typing import Dict, Optional

#: The paper's scale of perturbations (PAPER.md, "Measures"), for comparison.
PAPER_REFERENCE = 'paper (FCN/FR on VOC): ADVR a few %, PERM ~ORIG, p ~1e-3, L-inf < 10, <= 200 iters'


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
        metric = main_metric(m)
        if metric is None:
            continue
        scale = metric_scale(metric)

        def get(variant):
            v = m.get(f'{variant}/{metric}')
            return f'{scale * float(v):7.2f}' if v is not None else f"{'-':>7}"

        iters, p, linf, succ = (m.get(f'dag/{k}') for k in ('iters', 'p', 'linf', 'success'))
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
    import os.path as osp
    cfg = report.get('config') or '?'
    return osp.splitext(osp.basename(str(cfg)))[0]


def transfer_matrix(reports: Dict[str, dict], source_reports: Optional[Dict[str, dict]] = None):
    """Rows = where the perturbations were made, columns = where they were
    applied, cells = ORIG - ADVR of the headline metric (in %).

    Args:
        reports: ``dag_report.json`` contents by path. A run with
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
    import os.path as osp
    source_reports = source_reports or {}
    cells, rows, cols = {}, [], []
    for path, rep in reports.items():
        m = rep.get('metrics', {})
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
