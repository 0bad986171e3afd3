"""TIDE's picture of what an attack broke: per variant (the clean images,
the attack, each member of an ensemble), the AP that fixing each of TIDE's
six error types gives back, as grouped bars in TIDE's colours (its
``Plotter``'s: seaborn's ``muted`` palette, the same entry per error type),
written as a PNG atomically (:func:`mmdag.plotting.save_png`: a temporary
file, then ``os.replace``)."""
from typing import Dict, List, Optional, Tuple

from mmdag.plotting import pyplot, save_png
from .tide import ERRORS, TIDE_NAMES

__all__ = ['tide_bars', 'TIDE_COLORS']

#: TIDE's colour of each error type (seaborn's ``muted`` palette, entries 9,
#: 8, 2, 6, 4, 3 as TIDE's plotter takes them)
TIDE_COLORS = dict(cls='#82C6E2', loc='#D5BB67', both='#6ACC64', dupe='#DC7EC0',
                   bkg='#956CB4', miss='#D65F5F')


def _order(names: List[str]) -> List[str]:
    """The clean images first, then the attack (ADVR), then the rest as given."""
    first = [n for n in ('orig', 'advr') if n in names]
    return first + [n for n in names if n not in first]


def _label(name: str) -> str:
    """``advr[TOGVanishing]`` -> ``TOGVanishing``; other names as they are."""
    return name[5:-1] if name.startswith('advr[') and name.endswith(']') else name


def _draw(rows: Dict[str, Dict[str, float]], title: str) -> Tuple[object, object]:
    plt = pyplot()
    names = _order(list(rows))
    width = 0.8 / len(ERRORS)
    fig, ax = plt.subplots(figsize=(1.0 + 1.5 * len(names), 3.6))
    for k, error in enumerate(ERRORS):
        ax.bar([i + (k - (len(ERRORS) - 1) / 2) * width for i in range(len(names))],
               [float(rows[n][f'dAP/{error}']) for n in names], width,
               color=TIDE_COLORS[error], label=TIDE_NAMES[error], gid=f'dAP/{error}')
    ax.set_xticks(range(len(names)))
    # a member by its name alone: advr[TOGVanishing] is wider than its bars
    ax.set_xticklabels([f"{_label(n)}\nAP {float(rows[n]['AP']):.1f}" for n in names],
                       fontsize=8)
    ax.set_ylabel('dAP (AP points a fix gives back)')
    ax.set_ylim(bottom=0)
    ax.grid(axis='y', alpha=0.3)
    ax.legend(fontsize=7, ncol=len(ERRORS), loc='lower center', bbox_to_anchor=(0.5, 1.0))
    if title:
        ax.set_title(title, fontsize=10, pad=22)
    return fig, ax


def tide_bars(rows: Dict[str, Dict[str, float]], path: str, title: str = '') -> Optional[str]:
    """Draw the grouped bars and write them to ``path``.

    Args:
        rows (dict): per variant (``orig``, ``advr``, a member's name...),
            :func:`~mmdag.evaluation.tide.tide_summary`'s output (``AP`` and
            ``dAP/<type>`` are read).
        path (str): the PNG written (its folder is created).
        title (str): the picture's title. Defaults to ''.

    Returns:
        str | None: ``path``; None when ``rows`` is empty (nothing written).
    """
    if not rows:
        return None
    missing = [f'{n}: {k}' for n, r in rows.items()
               for k in ['AP'] + [f'dAP/{e}' for e in ERRORS] if k not in r]
    if missing:
        raise KeyError(f"TIDE picture: rows lack {', '.join(missing)} (tide_summary's keys)")
    fig, _ = _draw(rows, title)
    return save_png(fig, path)
