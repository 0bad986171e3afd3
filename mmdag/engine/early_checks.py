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


def check_saved_perturbations(dirs, dataset) -> None:
    """Transfer: every directory exists and holds a saved perturbation of
    every test image, or stop in one line naming the fix."""
    from .perturbations import image_names
    for d in dirs:
        if not osp.isdir(d):
            raise MMDagError(f'perturbation directory {d} not found: pass the '
                             '<work_dir>/perturbations of a run with save_perturbations=True')
    for d in dirs:
        missing = [n for n in image_names(dataset) if not osp.isfile(osp.join(d, n + '.npz'))]
        if missing:
            raise MMDagError(
                f'{len(missing)} of the {len(dataset)} test images have no saved perturbation '
                f'in {d} (e.g. {missing[0]}): save the perturbations on the same test set '
                '(--save-perturbations), or check the directory')
