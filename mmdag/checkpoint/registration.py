"""Serving every scheme of mmengine's ``CheckpointLoader`` by mmdag, while a block runs.

Nothing changes at import. :func:`safe_loading` (or :func:`install` and its
undo) makes every scheme registered with mmengine's ``CheckpointLoader`` go
through mmdag while a block runs: local paths, http(s) URLs and the zoo
names through mmdag's weights-only loaders, and every other scheme
(``pavi://``, ``s3://``, ``petrel://``, anything else registered) through
:func:`mmdag.checkpoint.refuse_checkpoint_scheme`. The undo puts back
exactly the loaders that were there. :class:`mmdag.engine.CheckpointCheckHook`
does it for the run it belongs to; ``tools/test.py`` and ``tools/train.py``
for the whole run (model building, ``init_weights``' ``pretrained`` /
``Pretrained`` init_cfg, ``load_from`` and ``resume``).
"""
import contextlib
from collections import OrderedDict
from typing import Callable, Dict

from .local import load_checkpoint_file
from .url import load_checkpoint_url
from .zoo import ZOO_SCHEMES, load_checkpoint_zoo, refuse_checkpoint_scheme


@contextlib.contextmanager
def safe_loading():
    """mmengine's ``CheckpointLoader`` uses mmdag's loaders while the block runs."""
    restore = install()
    try:
        yield
    finally:
        restore()


def _loader_for(prefix: str) -> Callable:
    if prefix == '':
        return load_checkpoint_file
    if prefix in ('http://', 'https://'):
        return load_checkpoint_url
    if prefix in ZOO_SCHEMES:
        return load_checkpoint_zoo
    return refuse_checkpoint_scheme


def install() -> Callable[[], None]:
    """Serve every scheme registered with mmengine's ``CheckpointLoader``
    (and the local, http(s) and zoo ones) by mmdag; return the undo, which
    puts back the loaders that were there (a scheme registered meanwhile by
    someone else is kept)."""
    from mmengine.runner.checkpoint import CheckpointLoader
    saved: Dict[str, Callable] = dict(CheckpointLoader._schemes)
    prefixes = list(saved) + [p for p in ('', 'http://', 'https://', *ZOO_SCHEMES)
                              if p not in saved]
    ours = {p: _loader_for(p) for p in prefixes}
    CheckpointLoader._schemes = _sorted({**saved, **ours})

    def restore() -> None:
        table = {}
        for p, loader in CheckpointLoader._schemes.items():
            if loader is not ours.get(p):   # registered or replaced by someone else meanwhile
                table[p] = loader
            elif p in saved:
                table[p] = saved[p]
        CheckpointLoader._schemes = _sorted(table)
    return restore


def _sorted(schemes: Dict[str, Callable]) -> 'OrderedDict[str, Callable]':
    # as CheckpointLoader keeps them: longer prefixes first
    return OrderedDict(sorted(schemes.items(), key=lambda t: t[0], reverse=True))
