"""Loading checkpoints safely: weights only, unless the user trusts the file.

A ``.pth`` file is a pickle, and unpickling can run any code. torch >= 2.6
loads with ``weights_only=True`` by default, which refuses every object that
is not a tensor or a plain container; but mmengine's Runner writes more than
weights (a message hub with ``HistoryBuffer`` objects, numpy arrays, numpy
scalars and dtypes), so its own checkpoints, the demo's and many zoo files,
no longer load.

:data:`SAFE_GLOBALS` is the full allow-list those checkpoints need, each an
object that only builds data (found with
``torch.serialization.get_unsafe_globals_in_checkpoint`` on Runner-written
checkpoints). ``builtins.getattr``, which a pickled ``HistoryBuffer`` uses to
name its statistics methods, is replaced by :func:`_history_buffer_getattr`,
which looks up only those methods.

:func:`load_checkpoint_file` loads with ``weights_only=True`` and that list.
A file that needs anything else is refused in one line, unless its path was
passed to :func:`trust` (``tools/test.py --trust-checkpoint``): then, and
only for that file, it is loaded with ``weights_only=False`` and a line says
so.

Nothing changes at import. :func:`safe_loading` makes mmengine's
``CheckpointLoader`` use these loaders for local paths and http(s) URLs
(download.openmmlab.com) while a block runs; :class:`mmdag.engine.
CheckpointCheckHook` does it for the run it belongs to.
"""
import contextlib
import os
import os.path as osp
import pickle
from typing import Callable, Dict, Optional

import numpy as np
import torch

from mmdag.errors import MMDagError


class CheckpointError(MMDagError):
    """A checkpoint that cannot be loaded safely or does not fit the model."""


def _history_buffer_getattr(obj, name: str):
    """``getattr`` for unpickling: only ``HistoryBuffer``'s statistics methods."""
    from mmengine.logging import HistoryBuffer
    if (obj is HistoryBuffer and isinstance(name, str) and not name.startswith('_')
            and callable(getattr(HistoryBuffer, name, None))):
        return getattr(obj, name)
    raise pickle.UnpicklingError(
        f'getattr({obj!r}, {name!r}) is not allowed in a weights-only checkpoint')


def _safe_globals() -> list:
    from mmengine.logging import HistoryBuffer
    multiarray = np._core.multiarray if hasattr(np, '_core') else np.core.multiarray
    entries = [HistoryBuffer, np.ndarray, np.dtype,
               (_history_buffer_getattr, 'builtins.getattr')]
    # numpy 2 pickles under numpy._core, numpy 1 under numpy.core: accept both
    for module in ('numpy.core.multiarray', 'numpy._core.multiarray'):
        entries += [(multiarray._reconstruct, f'{module}._reconstruct'),
                    (multiarray.scalar, f'{module}.scalar')]
    # numpy >= 1.25 may pickle a dtype by its class (np.dtypes.Float32DType...)
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        entries += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith('DType')]
    return entries


def __getattr__(name):  # SAFE_GLOBALS is built on first use (mmengine import)
    if name == 'SAFE_GLOBALS':
        return _safe_globals()
    raise AttributeError(name)


_TRUSTED: set = set()


def trust(path: str) -> None:
    """Allow ``weights_only=False`` for this one local file (the user said so)."""
    _TRUSTED.add(osp.realpath(osp.expanduser(path)))


def _trusted(path: str) -> bool:
    return osp.realpath(osp.expanduser(path)) in _TRUSTED


def _unsafe_globals(path: str) -> list:
    try:
        return sorted(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # noqa: BLE001  (only used to word the message)
        return []


def load_checkpoint_file(filename: str, map_location=None):
    """Load a local checkpoint: weights only (with :data:`SAFE_GLOBALS`),
    or, for a file passed to :func:`trust`, fully, with a printed line."""
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint {filename} not found: pass the path of an existing '
                                'checkpoint file (or an http(s) URL of a zoo checkpoint)')
    if _trusted(filename):
        print(f'mmdag: loading {filename} with weights_only=False (--trust-checkpoint): '
              'it may run code stored in the file', flush=True)
        return torch.load(filename, map_location=map_location, weights_only=False)
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            return torch.load(filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        extra = [g for g in _unsafe_globals(filename)
                 if g not in _allowed_names()]
        what = ', '.join(extra[:5]) or str(e).splitlines()[0][:200]
        raise CheckpointError(
            f'checkpoint {filename} holds objects other than weights ({what}), which '
            'could run code when loaded: if you trust the file, pass --trust-checkpoint '
            '(tools/test.py) or trust_checkpoint=True (CheckpointCheckHook)') from None


def _allowed_names() -> set:
    names = set()
    for g in _safe_globals():
        if isinstance(g, tuple):
            names.add(g[1])
        else:
            names.add(f'{g.__module__}.{g.__qualname__}')
    return names


def load_checkpoint_url(url: str, map_location=None, model_dir: Optional[str] = None):
    """Download (once, to torch's hub cache, rank 0 first) and load weights only."""
    from mmengine.dist import get_dist_info
    from torch.hub import get_dir, download_url_to_file
    from urllib.parse import urlparse
    rank, world_size = get_dist_info()
    model_dir = model_dir or osp.join(get_dir(), 'checkpoints')
    path = osp.join(model_dir, osp.basename(urlparse(url).path))
    if rank == 0 and not osp.isfile(path):
        os.makedirs(model_dir, exist_ok=True)
        download_url_to_file(url, path, progress=False)
    if world_size > 1:
        torch.distributed.barrier()
    return load_checkpoint_file(path, map_location)


@contextlib.contextmanager
def safe_loading():
    """mmengine's ``CheckpointLoader`` uses the loaders above while the block runs."""
    restore = install()
    try:
        yield
    finally:
        restore()


def install() -> Callable[[], None]:
    """Register the loaders for local paths and http(s); return the undo."""
    from mmengine.runner.checkpoint import CheckpointLoader
    schemes: Dict[str, Callable] = CheckpointLoader._schemes
    saved = {p: schemes.get(p) for p in ('', 'http://', 'https://')}
    CheckpointLoader.register_scheme(prefixes='', loader=load_checkpoint_file, force=True)
    CheckpointLoader.register_scheme(prefixes=['http://', 'https://'],
                                     loader=load_checkpoint_url, force=True)

    def restore() -> None:
        for p, loader in saved.items():
            if loader is None:
                CheckpointLoader._schemes.pop(p, None)
            else:
                CheckpointLoader.register_scheme(prefixes=p, loader=loader, force=True)
    return restore
