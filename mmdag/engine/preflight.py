"""Checks a hook makes before the first batch: what would otherwise fail
only when its batch arrives, hours in."""
import os
import os.path as osp

from mmdag.errors import MMDagError


def probe_writable(d: str) -> None:
    """Create ``d`` and write (then remove) a probe file in it; ``OSError``
    where that fails."""
    os.makedirs(d, exist_ok=True)
    probe = osp.join(d, f'.write_probe_{os.getpid()}')
    with open(probe, 'w') as f:
        f.write('ok')
    os.remove(probe)


def check_writable(d: str, instead: str) -> None:
    """:func:`probe_writable`, or stop in one line naming the fix (another
    ``--work-dir``, or ``instead``)."""
    try:
        probe_writable(d)
    except OSError as e:
        why = 'a file is in the way' if osp.isfile(d) else e.strerror
        raise MMDagError(f'cannot write to {d} ({why}): pass a --work-dir you '
                         f'can write, or run with {instead}') from None
