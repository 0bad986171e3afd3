"""Trust, the refusal line, and loading a local file.

A file that needs anything beyond :data:`mmdag.checkpoint.SAFE_GLOBALS` is
refused in one line (:func:`_refusal`, a :class:`CheckpointError`), unless
the name the user gave (a path, a URL or a zoo name) was passed to
:func:`trust` (``tools/test.py --trust-checkpoint``,
``CheckpointCheckHook(trust_checkpoint=True)``): then, and only for that
checkpoint, it is loaded with ``weights_only=False`` and a line says so
(:func:`_load_trusted`).

:func:`load_checkpoint_file` loads a local file that way.
"""
import os.path as osp
import re

import torch

from mmdag.errors import MMDagError
from .weights_only import _load_weights_only, _NotWeights


class CheckpointError(MMDagError):
    """A checkpoint that cannot be loaded safely or does not fit the model."""


# --------------------------------------------------------------------------
# trust

_TRUSTED: set = set()
_SCHEME = re.compile(r'^([A-Za-z][A-Za-z0-9+.-]*)://')
_ALIASES = {'openmmlab': 'open-mmlab', 'modelzoo': 'torchvision'}


def _trust_key(name: str) -> str:
    """A URL or zoo name as given (scheme lower-cased, ``openmmlab://`` read
    as ``open-mmlab://`` and ``modelzoo://`` as ``torchvision://``); a path
    made absolute with its links resolved."""
    name = str(name)
    m = _SCHEME.match(name)
    if m:
        scheme = m.group(1).lower()
        return f'{_ALIASES.get(scheme, scheme)}://{name[m.end():]}'
    return osp.realpath(osp.expanduser(name))


def trust(name: str) -> None:
    """Allow ``weights_only=False`` for this one checkpoint (the user said so):
    a local path, an http(s) URL or a zoo name (``open-mmlab://NAME``...),
    as it is then passed to the loader."""
    _TRUSTED.add(_trust_key(name))


def _trusted(*names) -> bool:
    return any(n and _trust_key(n) in _TRUSTED for n in names)


# --------------------------------------------------------------------------
# loading one file

def _load_trusted(path: str, shown: str, map_location=None):
    print(f'mmdag: loading {shown} with weights_only=False (--trust-checkpoint): '
          'it may run code stored in the file', flush=True)
    return torch.load(path, map_location=map_location, weights_only=False)


def _refusal(shown: str, what: str, note: str = '') -> CheckpointError:
    return CheckpointError(
        f'checkpoint {shown} holds objects other than weights ({what}), which could run code '
        f'when loaded{note}: if you trust the file, pass --trust-checkpoint (tools/test.py), '
        '--trust-checkpoint NAME (tools/train.py) or trust_checkpoint=True (CheckpointCheckHook)')


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f'{type(e).__name__}: {text.splitlines()[0][:200]}' if text else type(e).__name__


def _load_local(path: str, map_location, shown: str, trusted: bool):
    if trusted:
        return _load_trusted(path, shown, map_location)
    try:
        return _load_weights_only(path, map_location)
    except _NotWeights as e:
        raise _refusal(shown, e.what) from None


def load_checkpoint_file(filename: str, map_location=None):
    """Load a local checkpoint: weights only (with :data:`SAFE_GLOBALS`),
    or, for a file passed to :func:`trust`, fully, with a printed line."""
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint {filename} not found: pass the path of an existing '
                                'checkpoint file (or an http(s) URL of a zoo checkpoint)')
    return _load_local(filename, map_location, filename, _trusted(filename))
