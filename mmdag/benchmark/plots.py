"""The zoo benchmark's pictures (matplotlib, no display needed).

- :func:`convergence_plot`: the fraction of attacked targets still correct
  against the DAG iteration, median and interquartile band across images
  (the report's ``convergence``), and the fraction of images still updated;
- :func:`iterations_histogram`: iterations per attacked image;
- :func:`variants_chart`: ORIG / ADVR / PERM of every model, side by side.

Each writes its PNG atomically (a killed run leaves no half picture).
"""
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
