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


def format_table(rows: Dict[str, dict]) -> str:
    """One line per run: metric (in %) on ORIG / ADVR / PERM and the attack statistics."""
    header = (f"{'model':<40} {'metric':<8} {'ORIG':>7} {'ADVR':>7} {'PERM':>7} "
              f"{'iters':>7} {'p':>9} {'L-inf':>7} {'success':>8}")
    lines = [header, '-' * len(header)]
    for name, m in rows.items():
        metric = main_metric(m)
        if metric is None:
            continue

        # mmdet's VOC/COCO metrics report AP as a fraction, mmseg's IoU in %
        scale = 100.0 if 'AP' in metric.rsplit('/', 1)[-1] else 1.0

        def get(variant):
            v = m.get(f'{variant}/{metric}')
            return f'{scale * float(v):7.2f}' if v is not None else f"{'-':>7}"

        iters, p, linf, succ = (m.get(f'dag/{k}') for k in ('iters', 'p', 'linf', 'success'))
        lines.append(
            f'{name[:40]:<40} {metric.rsplit("/", 1)[-1]:<8} {get("orig")} {get("advr")} '
            f'{get("perm")} '
            + (f'{iters:7.1f} {p:9.2e} {linf:7.2f} {100 * succ:7.1f}%' if iters is not None
               else ''))
    lines.append(PAPER_REFERENCE)
    return '\n'.join(lines)
