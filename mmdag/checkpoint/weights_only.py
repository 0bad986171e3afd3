"""Weights-only unpickling with mmdag's allow-list.

A ``.pth`` file is a pickle, and unpickling can run any code. torch >= 2.6
loads with ``weights_only=True`` by default, which refuses every object that
is not a tensor or a plain container; but mmengine's Runner writes more than
weights (a message hub with ``HistoryBuffer`` objects, numpy arrays, numpy
scalars and dtypes), so its own checkpoints, the demo's and many zoo files,
no longer load.

:data:`mmdag.checkpoint.SAFE_GLOBALS` (:func:`_safe_globals`) is the full
allow-list those checkpoints need, each an object that only builds data
(found with ``torch.serialization.get_unsafe_globals_in_checkpoint`` on
Runner-written checkpoints). ``builtins.getattr``, which a pickled
``HistoryBuffer`` uses to name its statistics methods, is replaced by
:func:`_history_buffer_getattr`, which looks up only those methods.

:func:`_load_weights_only` loads a file with that list: through
``torch.serialization.safe_globals`` on torch >= 2.5
(:data:`TORCH_SAFE_GLOBALS`), through :class:`_RestrictedUnpickler` on older
torch; a file that needs more raises :class:`_NotWeights`.
"""
import _codecs
import _compat_pickle
import pickle
from importlib import import_module
from typing import Optional

import numpy as np
import torch


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

    # numpy 2 has numpy._core; numpy 1.26 has a numpy._core stub without
    # multiarray (importing numpy._core.multiarray there warns): ask numpy.core
    multiarray = import_module('numpy._core.multiarray' if int(np.__version__.split('.')[0]) >= 2
                               else 'numpy.core.multiarray')
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


class _NotWeights(Exception):
    """The file holds objects other than weights (``what`` names them)."""

    def __init__(self, what: str):
        super().__init__(what)
        self.what = what


def _unsafe_globals(path: str) -> list:
    try:
        return sorted(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # noqa: BLE001  (only used to word the message)
        return []


def _allowed_names() -> set:
    names = set()
    for g in _safe_globals():
        if isinstance(g, tuple):
            names.add(g[1])
        else:
            names.add(f'{g.__module__}.{g.__qualname__}')
    return names


#: torch >= 2.5 takes extra allowed globals for one load
#: (``torch.serialization.safe_globals``); older torch (2.1 ...) gets the same
#: allow-list through :class:`_RestrictedUnpickler`
TORCH_SAFE_GLOBALS = hasattr(torch.serialization, 'safe_globals')


def _restricted_globals() -> dict:
    """``'module.name' -> object``: torch's own weights-only allow-list
    (tensors, storages, dtypes, ``OrderedDict``...) and mmdag's."""
    from torch import _weights_only_unpickler
    allowed = dict(_weights_only_unpickler._get_allowed_globals())
    # numpy 1 pickles a scalar's bytes through _codecs.encode (str -> bytes,
    # nothing else); torch >= 2.3's own list has it, torch 2.1's not
    allowed.setdefault('_codecs.encode', _codecs.encode)
    for g in _safe_globals():
        obj, name = g if isinstance(g, tuple) else (g, f'{g.__module__}.{g.__qualname__}')
        allowed[name] = obj
    return allowed


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the allowed globals (the Python docs'
    restricted unpickler): every callable a pickle can call or instantiate
    comes through ``find_class``, so a file that names anything else is
    refused before any of it runs. ``torch.load`` subclasses it to serve its
    storages and its persistent ids."""

    _allowed: Optional[dict] = None

    def find_class(self, module, name):
        allowed = type(self)._allowed
        if allowed is None:
            allowed = type(self)._allowed = _restricted_globals()
        # protocol 2 (torch.save's default) writes Python 2 names (``__builtin__``)
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        full = f'{module}.{name}'
        if full in allowed:
            return allowed[full]
        raise pickle.UnpicklingError(f'{_NOT_ALLOWED}{full}')


_NOT_ALLOWED = 'weights-only load refused the global '


class _RestrictedPickle:
    """The ``pickle_module`` of a restricted ``torch.load``."""
    Unpickler = _RestrictedUnpickler
    UnpicklingError = pickle.UnpicklingError
    __name__ = 'mmdag.checkpoint._RestrictedPickle'

    @staticmethod
    def load(file, **kwargs):
        return _RestrictedUnpickler(file, **kwargs).load()


def _load_weights_only(path: str, map_location=None):
    """``torch.load`` weights-only with the allow-list; :class:`_NotWeights`
    for a file that holds more."""
    if not TORCH_SAFE_GLOBALS:
        try:
            return torch.load(path, map_location=map_location, pickle_module=_RestrictedPickle,
                              weights_only=False)
        except pickle.UnpicklingError as e:
            text = str(e)
            what = text[len(_NOT_ALLOWED):] if text.startswith(_NOT_ALLOWED) else text
            raise _NotWeights(what.splitlines()[0][:200] if what else 'UnpicklingError') from None
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        extra = [g for g in _unsafe_globals(path) if g not in _allowed_names()]
        raise _NotWeights(', '.join(extra[:5]) or str(e).splitlines()[0][:200]) from None
