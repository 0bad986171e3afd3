"""Pictures as files (matplotlib, no display needed), written atomically.

- :func:`pyplot`: matplotlib's pyplot on the file-only backend;
- :func:`save_png`: a figure as a PNG, written atomically (a killed run
  leaves no half picture), the figure closed;
- :func:`sweep_curve`: an epsilon sweep's curve (the report's ``sweep``).
"""
import io
from typing import Optional

from mmdag.fileio import write_atomic


def pyplot():
    import matplotlib
    matplotlib.use('Agg')   # files only, no display
    import matplotlib.pyplot as plt
    return plt


def save_png(fig, path: str) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format='png', dpi=100, bbox_inches='tight')
    pyplot().close(fig)
    write_atomic(path, buffer.getvalue())
    return path


def sweep_curve(section: dict, path: str, title: str = '') -> Optional[str]:
    """The headline metric against epsilon (log scale): ADVR (an ensemble's
    worst case), ADVR rounded to 8 bits, PERM and an ensemble's members
    where the run has them, ORIG as a line; None when the section has no
    headline metric."""
    metric = section.get('metric')
    rows = section.get('rows') or []
    if not metric or not rows:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    eps = [r['epsilon'] for r in rows]
    worst = any(r.get('members') for r in rows)
    for variant, style in (('advr', dict(color='C3', marker='o',
                                         label='ADVR, worst case' if worst else 'ADVR')),
                           ('advr_winner', dict(color='C3', marker='s', ls=':', ms=4,
                                                label="the attack's per-image winners")),
                           ('advr_uint8', dict(color='C1', marker='x', ls='--',
                                               label='ADVR, 8-bit')),
                           ('perm', dict(color='C0', marker='.', ls=':', label='PERM'))):
        ys = [r['variants'].get(variant) for r in rows]
        if any(y is not None for y in ys):
            ax.plot([e for e, y in zip(eps, ys) if y is not None],
                    [y for y in ys if y is not None], **style)
    members = list(dict.fromkeys(n for r in rows for n in r.get('members', {})))
    for k, name in enumerate(members):
        ys = [r.get('members', {}).get(name) for r in rows]
        ax.plot([e for e, y in zip(eps, ys) if y is not None], [y for y in ys if y is not None],
                color=f'C{4 + k}', lw=1, alpha=0.8, marker='.', label=name)
    if section.get('orig') is not None:
        ax.axhline(section['orig'], color='k', lw=1, ls='--', label='ORIG')
    ax.set_xscale('log', base=2)
    ax.set_xticks(eps)
    ax.set_xticklabels([f'{e:g}' for e in eps], fontsize=8)
    ax.set_xlabel('epsilon (0..255 scale, L-inf)')
    ax.set_ylabel(section.get('metric_name', metric))
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return save_png(fig, path)


def error_bars(section: dict, path: str, title: str = '') -> Optional[str]:
    """A detector's error breakdown (the report's ``errors``) as one stacked
    bar per variant: the objects found, covered by a wrong class,
    mislocalised and missed (they add up to the objects), with the boxes
    fabricated on the background written beside; None without variants."""
    rows = section.get('variants') or {}
    if not rows:
        return None
    plt = pyplot()
    # the clean images first, then each attack, then the worst cases
    last = ('advr', 'advr_worst')
    names = [n for n in rows if n == 'orig'] + [n for n in rows if n not in ('orig', *last)] \
        + [n for n in last if n in rows]
    fig, ax = plt.subplots(figsize=(6.0, 0.45 * len(names) + 1.2))
    left = [0] * len(names)
    for kind, color, label in (('tp', 'C2', 'found'), ('wrong_class', 'C1', 'wrong class'),
                               ('mislocalised', 'C4', 'mislocalised'),
                               ('missed', 'C3', 'missed')):
        widths = [rows[n].get(kind, 0) for n in names]
        ax.barh(names, widths, left=left, color=color, label=label)
        left = [a + b for a, b in zip(left, widths)]
    for k, n in enumerate(names):
        ax.text(left[k], k, f"  +{rows[n].get('fabricated', 0)} fabricated", va='center',
                fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(f"objects ({section.get('gt')}), detections at score >= "
                  f"{section.get('score_thr')}")
    ax.set_xlim(0, max(left) * 1.45 if max(left) else 1)
    ax.legend(fontsize=7, ncol=4, loc='lower center', bbox_to_anchor=(0.5, 1.0))
    if title:
        ax.set_title(title, fontsize=10, pad=22)
    return save_png(fig, path)
