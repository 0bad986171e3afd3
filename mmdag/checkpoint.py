"""Loading checkpoints safely: weights only, unless the user trusts the file.

A ``.pth`` file is a pickle, and unpickling can run any code. torch >= 2.6
loads with ``weights_only=True`` by default, which refuses every object that
is not a tensor or a plain container; but mmengine's Runner writes more than
weights (a message hub with ``HistoryBuffer`` objects, numpy arrays, numpy
scalars and dtypes), so its own checkpoints, the demo's and many zoo files,
no longer load. And mmengine's URL loader (``torch.hub``'s ``load_url``) still
unpickles downloads, and whatever its cache holds, with ``weights_only=False``.

:data:`SAFE_GLOBALS` is the full allow-list those checkpoints need, each an
object that only builds data (found with
``torch.serialization.get_unsafe_globals_in_checkpoint`` on Runner-written
checkpoints). ``builtins.getattr``, which a pickled ``HistoryBuffer`` uses to
name its statistics methods, is replaced by :func:`_history_buffer_getattr`,
which looks up only those methods.

The loaders, each ``weights_only=True`` with that list:

- :func:`load_checkpoint_file`: a local file;
- :func:`load_checkpoint_url`: an http(s) URL (download.openmmlab.com), cached
  in torch's hub cache (``<hub dir>/checkpoints``) as mmengine caches it. A
  download goes to a hidden ``.<name>.<random>.tmp`` in that folder and takes
  the cache name only once it loaded (or was trusted); a refused download is
  deleted. A cached file that is refused is renamed ``<name>.refused``, so
  that no other loader reads it. In a distributed run local rank 0 of each
  node downloads (no shared file system assumed) while the node's other
  ranks wait at a barrier;
- :func:`load_checkpoint_zoo`: ``open-mmlab://``, ``openmmlab://``,
  ``mmcls://``, ``torchvision://`` and ``modelzoo://`` names, resolved to a
  URL (or, for an open-mmlab name, a file under mmengine's home) with
  mmengine's own tables, then loaded as above.

A file that needs anything beyond the list is refused in one line, unless
the name the user gave (a path, a URL or a zoo name) was passed to
:func:`trust` (``tools/test.py --trust-checkpoint``,
``CheckpointCheckHook(trust_checkpoint=True)``): then, and only for that
checkpoint, it is loaded with ``weights_only=False`` and a line says so. A
trusted URL's file is unpickled that way only as downloaded from the URL: a
cached copy that holds more than weights is moved aside and downloaded again.

Nothing changes at import. :func:`safe_loading` (or :func:`install` and its
undo) makes every scheme registered with mmengine's ``CheckpointLoader`` go
through mmdag while a block runs: local paths, http(s) URLs and the zoo
names through the loaders above, and every other scheme (``pavi://``,
``s3://``, ``petrel://``, anything else registered) is refused in one line
that says to download the file and pass its local path. The undo puts back
exactly the loaders that were there. :class:`mmdag.engine.CheckpointCheckHook`
does it for the run it belongs to; ``tools/test.py`` and ``tools/train.py``
for the whole run (model building, ``init_weights``' ``pretrained`` /
``Pretrained`` init_cfg, ``load_from`` and ``resume``).
"""
import _codecs
import _compat_pickle
import contextlib
import os
import os.path as osp
import pickle
import re
import shutil
import tempfile
from collections import OrderedDict
from importlib import import_module
from typing import Callable, Dict, Optional, Tuple

import numpy as np
import torch

from mmdag.errors import MMDagError
from mmdag.fileio import TEMP_SUFFIX

#: the mm zoo names mmengine's CheckpointLoader resolves (mmdag resolves them the same way)
ZOO_SCHEMES = ('open-mmlab://', 'openmmlab://', 'mmcls://', 'torchvision://', 'modelzoo://')
#: the URL-like checkpoint names mmdag loads (anything else with ``://`` is refused)
URL_SCHEMES = ('http://', 'https://') + ZOO_SCHEMES
REFUSED_SUFFIX = '.refused'


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


def __getattr__(name):  # SAFE_GLOBALS is built on first use (mmengine import)
    if name == 'SAFE_GLOBALS':
        return _safe_globals()
    raise AttributeError(name)


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


# --------------------------------------------------------------------------
# URLs

def _local_rank() -> int:
    """This process's rank on its node: mmengine's local group when there is
    one, else what the launcher says (torchrun, slurm, Open MPI), else 0 (then
    every rank downloads: slower, still safe)."""
    from mmengine.dist import get_local_rank
    try:
        return get_local_rank()
    except RuntimeError:   # no local group (e.g. a process group started by hand)
        pass
    for var in ('LOCAL_RANK', 'SLURM_LOCALID', 'OMPI_COMM_WORLD_LOCAL_RANK'):
        value = os.environ.get(var, '')
        if value.isdigit():
            return int(value)
    return 0


def _download(url: str, path: str, shown: Optional[str] = None) -> str:
    """Fetch ``url`` to a hidden temporary next to ``path`` (the name
    :func:`mmdag.fileio.write_atomic` uses, so that the sweeper knows it);
    return the temporary's path. A failed download is one line naming
    ``shown`` (the name the user gave)."""
    from urllib.request import Request, urlopen
    folder = osp.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.' + osp.basename(path) + '.', suffix=TEMP_SUFFIX,
                               dir=folder)
    try:
        with os.fdopen(fd, 'wb') as f, urlopen(Request(url, headers={'User-Agent': 'mmdag'})) as u:
            shutil.copyfileobj(u, f, 1 << 20)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
    except (OSError, ValueError) as e:   # urllib's URLError and HTTPError are OSErrors
        _remove(tmp)
        reason = getattr(e, 'reason', None) if not hasattr(e, 'code') else None
        why = _first_line(reason) if isinstance(reason, BaseException) else (
            str(reason) if reason else _first_line(e))
        raise CheckpointError(
            f'checkpoint {shown or url}: the download failed ({why}): check the URL and the '
            'network, or download the file and pass its local path') from None
    except BaseException:
        _remove(tmp)
        raise
    return tmp


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def _move_aside(path: str) -> str:
    """Rename a refused cached file out of every loader's way; say where."""
    dst = path + REFUSED_SUFFIX
    try:
        os.replace(path, dst)
    except FileNotFoundError:   # another rank moved it first
        pass
    except OSError as e:
        return f'; delete {path} ({e.strerror} when moving it aside)'
    return f'; it was moved to {dst}, where no loader reads it'


def _looks_like_checkpoint(path: str) -> bool:
    """A zip archive (``torch.save`` since torch 1.6) or a pickle (protocol 2+)."""
    import zipfile
    if zipfile.is_zipfile(path):
        return True
    with open(path, 'rb') as f:
        return f.read(1) == b'\x80'


_NOT_A_CHECKPOINT = ('is not a PyTorch checkpoint (neither a complete zip archive nor a pickle: '
                     'an error page or a truncated download)')


def _load_cached(path: str, map_location, shown: str, trusted: bool, fresh: bool = False):
    """The cached file, weights-only. One that holds more is moved aside and
    refused; for a trusted URL, ``None`` (the caller downloads it again),
    or, when ``fresh`` (local rank 0 of the node has just downloaded it from
    the trusted URL), loaded fully."""
    if not _looks_like_checkpoint(path):
        raise CheckpointError(f'checkpoint {shown}: the cached file {path} {_NOT_A_CHECKPOINT}: '
                              'delete it to download it again')
    try:
        return _load_weights_only(path, map_location)
    except _NotWeights as e:
        if trusted and fresh:
            return _load_trusted(path, shown, map_location)
        note = _move_aside(path)
        if trusted:
            print(f'mmdag: the cached {path} holds more than weights ({e.what}){note}; '
                  f'downloading {shown} again (trusted)', flush=True)
            return None
        raise _refusal(shown, e.what, note) from None
    except Exception as e:  # noqa: BLE001  (a corrupt or truncated file)
        raise CheckpointError(f'checkpoint {shown} cannot be read ({_first_line(e)}): delete '
                              f'{path} to download it again') from None


def _fetch_and_load(url: str, path: str, map_location, shown: str, trusted: bool):
    """Download, load, and only then give the file its cache name."""
    tmp = _download(url, path, shown)
    try:
        if not _looks_like_checkpoint(tmp):
            raise CheckpointError(f'checkpoint {shown}: the download {_NOT_A_CHECKPOINT}; it was '
                                  'deleted: try again, or download the file and pass its local '
                                  'path')
        try:
            ck = (_load_trusted(tmp, shown, map_location) if trusted
                  else _load_weights_only(tmp, map_location))
        except _NotWeights as e:
            raise _refusal(shown, e.what, '; the download was deleted') from None
        except Exception as e:  # noqa: BLE001  (a truncated download, an HTML page)
            raise CheckpointError(
                f'checkpoint {shown}: the download is not a loadable checkpoint '
                f'({_first_line(e)}); it was deleted: try again, or download the file and '
                'pass its local path') from None
        os.replace(tmp, path)
    finally:
        _remove(tmp)
    return ck


def _load_url(url: str, map_location, model_dir: Optional[str], shown: str, trusted: bool):
    from urllib.parse import urlparse

    from mmengine.dist import get_dist_info
    from torch.hub import get_dir
    model_dir = model_dir or osp.join(get_dir(), 'checkpoints')
    path = osp.join(model_dir, osp.basename(urlparse(url).path))
    if shown != url:
        shown = f'{shown} ({url})'
    _, world_size = get_dist_info()
    leader = world_size == 1 or _local_rank() == 0
    ck, error = None, None
    if leader:   # one download per node: no shared file system is assumed
        try:
            if osp.isfile(path):
                ck = _load_cached(path, map_location, shown, trusted)
            if ck is None:
                ck = _fetch_and_load(url, path, map_location, shown, trusted)
        except Exception as e:  # noqa: BLE001  (raised after the barrier)
            error = e
    if world_size > 1:
        torch.distributed.barrier()
    if error is not None:
        raise error
    if leader:
        return ck
    if not osp.isfile(path):
        raise CheckpointError(f'checkpoint {shown}: local rank 0 of this node could not place '
                              f'it in {path} (its own error line says why)')
    return _load_cached(path, map_location, shown, trusted, fresh=True)


def load_checkpoint_url(url: str, map_location=None, model_dir: Optional[str] = None):
    """Download (once per node, to torch's hub cache) and load weights only,
    or fully for a URL passed to :func:`trust`."""
    return _load_url(url, map_location, model_dir, url, _trusted(url))


# --------------------------------------------------------------------------
# zoo names

def resolve_zoo_name(filename: str, warn: bool = True) -> Tuple[str, bool]:
    """What mmengine's loader for ``filename`` (``open-mmlab://NAME``...)
    would read: ``(url, True)``, or ``(path, False)`` for an open-mmlab name
    that its table maps to a file under mmengine's home. Uses mmengine's
    tables (its ``open_mmlab.json`` additions and deprecated names included)."""
    import logging

    from mmengine.logging import print_log
    from mmengine.runner import checkpoint as mc
    scheme = next((s for s in ZOO_SCHEMES if filename.startswith(s)), None)
    if scheme is None:
        raise ValueError(f'{filename} is not a zoo name ({", ".join(ZOO_SCHEMES)})')
    name = filename[len(scheme):]
    if scheme in ('open-mmlab://', 'openmmlab://'):
        deprecated = mc.get_deprecated_model_names()
        if name in deprecated:
            if warn:
                print_log(f'{scheme}{name} is deprecated in favor of {scheme}{deprecated[name]}',
                          logger='current', level=logging.WARNING)
            name = deprecated[name]
        table = mc.get_external_models()
    elif scheme == 'mmcls://':
        table = mc.get_mmcls_models()
    else:
        if scheme == 'modelzoo://' and warn:
            print_log('The URL scheme of "modelzoo://" is deprecated, please use '
                      '"torchvision://" instead', logger='current', level=logging.WARNING)
        try:
            table = mc.get_torchvision_models()
        except ImportError:
            raise CheckpointError(
                f'checkpoint {filename}: {scheme} names are resolved with torchvision, which is '
                'not installed: install torchvision, or pass the URL or a local path') from None
    if name not in table:
        raise CheckpointError(
            f"checkpoint {filename}: mmengine's {scheme} table has no {name!r}: check the name, "
            'or pass the URL or a local path')
    target = table[name]
    if scheme in ('open-mmlab://', 'openmmlab://') and not target.startswith(
            ('http://', 'https://')):
        return osp.join(mc._get_mmengine_home(), target), False
    return target, True


def load_checkpoint_zoo(filename: str, map_location=None):
    """Load an ``open-mmlab://``, ``openmmlab://``, ``mmcls://``,
    ``torchvision://`` or ``modelzoo://`` checkpoint as mmengine resolves it,
    through :func:`load_checkpoint_url` / :func:`load_checkpoint_file`'s
    checks; trusted when the name (or what it resolves to) was passed to
    :func:`trust`."""
    target, is_url = resolve_zoo_name(filename)
    trusted = _trusted(filename, target)
    if is_url:
        ck = _load_url(target, map_location, None, filename, trusted)
    else:
        if not osp.isfile(target):
            raise CheckpointError(f'checkpoint {filename}: {target} not found: put the file there '
                                  "(mmengine's home), or pass a local path or URL")
        ck = _load_local(target, map_location, f'{filename} ({target})', trusted)
    if filename.startswith('mmcls://'):
        from mmengine.runner.checkpoint import _process_mmcls_checkpoint
        ck = _process_mmcls_checkpoint(ck)
    return ck


def refuse_checkpoint_scheme(filename: str, map_location=None):
    """The loader for every scheme mmdag cannot load weights-only."""
    raise CheckpointError(unsupported_scheme_message(filename))


def unsupported_scheme_message(filename: str) -> str:
    m = re.match(r'^(\S+?://)', str(filename))
    scheme = m.group(1) if m else str(filename).split(':', 1)[0] + ':'
    return (f'checkpoint {filename}: mmdag loads checkpoints weights-only from local files, '
            f'http(s) URLs and {", ".join(ZOO_SCHEMES)} names, not from {scheme}: download '
            'the file and pass its local path')


# --------------------------------------------------------------------------
# mmengine's CheckpointLoader

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
