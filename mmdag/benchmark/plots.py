"""The zoo benchmark's pictures (matplotlib, no display needed).

- :func:`convergence_plot`: the fraction of attacked targets still correct
  against the DAG iteration, median and interquartile band across images
  (the report's ``convergence``), and the fraction of images still updated;
- :func:`iterations_histogram`: iterations per attacked image;
- :func:`variants_chart`: ORIG / ADVR / PERM of every model, side by side;
- :func:`model_pictures`: a finished model's convergence plot, iteration
  histogram and Figure-1 picture, each made again only when its report is newer.

Each writes its PNG atomically (a killed run leaves no half picture).
"""
import glob
import os.path as osp
from typing import List, Optional, Sequence

from mmdag.plotting import pyplot as _pyplot
from mmdag.plotting import save_png as _save


def convergence_plot(conv: dict, path: str, title: str = '') -> str:
    """Median (line), quartiles (band) and mean (dashed) of the fraction of
    targets still correct after m updates, in %, and the images still running."""
    plt = _pyplot()
    x = list(range(len(conv['median'])))
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    ax.fill_between(x, [100 * v for v in conv['q25']], [100 * v for v in conv['q75']],
                    alpha=0.25, color='C0', label='25-75% of images')
    ax.plot(x, [100 * v for v in conv['median']], color='C0', label='median')
    ax.plot(x, [100 * v for v in conv['mean']], color='C0', ls='--', lw=1, label='mean')
    ax.plot(x, [100 * v for v in conv['running']], color='C3', lw=1, label='images still running')
    ax.set_xlabel('DAG iteration')
    ax.set_ylabel('% of targets still correct')
    ax.set_ylim(-2, 102)
    ax.set_xlim(0, max(1, len(x) - 1))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"{title} ({conv['images']} images)" if title else f"{conv['images']} images",
                 fontsize=10)
    return _save(fig, path)


def iterations_histogram(iters: Sequence[int], path: str, max_iters: Optional[int] = None,
                         title: str = '') -> str:
    """Histogram of the iterations of the attacked images; a line at max_iters."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    top = max([*iters, max_iters or 0, 1])
    ax.hist(list(iters), bins=min(40, top + 1), range=(0, top + 1), color='C0')
    if max_iters:
        ax.axvline(max_iters, color='C3', lw=1, ls='--', label=f'max_iters = {max_iters}')
        ax.legend(fontsize=8)
    ax.set_xlabel('iterations')
    ax.set_ylabel('images')
    ax.set_title(f'{title} ({len(iters)} images)' if title else f'{len(iters)} images',
                 fontsize=10)
    return _save(fig, path)


def variants_chart(rows: List[dict], path: str) -> Optional[str]:
    """ORIG / ADVR / PERM (metric in %) of every model that has them."""
    rows = [r for r in rows if not r.get('failed') and r.get('ORIG') is not None]
    if not rows:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(4.5, 1.4 * len(rows) + 1.5), 3.6))
    width = 0.27
    for k, (variant, colour) in enumerate((('ORIG', 'C0'), ('ADVR', 'C3'), ('PERM', 'C2'))):
        xs = [i + (k - 1) * width for i in range(len(rows))]
        vals = [r.get(variant) or 0.0 for r in rows]
        bars = ax.bar(xs, vals, width, label=variant, color=colour)
        for b, v in zip(bars, vals):
            ax.annotate(f'{v:.1f}', (b.get_x() + b.get_width() / 2, v), ha='center',
                        va='bottom', fontsize=7)
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([f"{r['model']}\n({r['metric']})" for r in rows], fontsize=8)
    ax.set_ylabel('metric (%)')
    ax.legend(fontsize=8)
    ax.grid(axis='y', alpha=0.3)
    ax.set_title('DAG: clean (ORIG), adversarial (ADVR), permuted perturbation (PERM)',
                 fontsize=10)
    return _save(fig, path)


def model_pictures(name: str, work_dir: str, out_dir: str) -> List[str]:
    """Convergence plot, iteration histogram and one Figure-1 picture of a
    finished model (its run in ``work_dir``) as ``out_dir/<name>_*.png``,
    each made again only when the model's report is newer; the paths made."""
    from mmdag.engine.records import NOT_ATTACKED, read_records, unique_records
    from mmdag.fileio import write_atomic
    made = []
    from mmdag.contract import RECORDS_FILE, REPORT_FILE, work_path
    from mmdag.summary import read_report
    report = work_path(work_dir, REPORT_FILE)
    rep = read_report(report)

    def stale(path):
        return not osp.isfile(path) or osp.getmtime(path) < osp.getmtime(report)

    conv = rep.get('convergence')
    path = osp.join(out_dir, f'{name}_convergence.png')
    if conv and stale(path):
        made.append(convergence_plot(conv, path, name))
    path = osp.join(out_dir, f'{name}_iterations.png')
    if stale(path):
        recs = unique_records(read_records(work_path(work_dir, RECORDS_FILE))[0])
        iters = [r['iters'] for r in recs if r.get('status') not in NOT_ATTACKED]
        if iters:
            max_iters = ((rep.get('settings') or {}).get('attack') or {}).get('max_iters')
            made.append(iterations_histogram(iters, path, max_iters, name))
    figs = sorted(glob.glob(osp.join(work_dir, 'figures', '*.png')))
    path = osp.join(out_dir, f'{name}_figure1.png')
    if figs and stale(path):
        with open(figs[0], 'rb') as f:
            write_atomic(path, f.read())
        made.append(path)
    return made
