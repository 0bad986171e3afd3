"""Loading an http(s) URL through torch's hub cache.

mmengine's URL loader (``torch.hub``'s ``load_url``) still unpickles
downloads, and whatever its cache holds, with ``weights_only=False``.
:func:`load_checkpoint_url` loads an http(s) URL (download.openmmlab.com)
weights-only instead, cached in torch's hub cache (``<hub dir>/checkpoints``)
as mmengine caches it. A download goes to a hidden ``.<name>.<random>.tmp``
in that folder and takes the cache name only once it loaded (or was
trusted); a refused download is deleted. A cached file that is refused is
renamed ``<name>.refused``, so that no other loader reads it. In a
distributed run local rank 0 of each node downloads (no shared file system
assumed) while the node's other ranks wait at a barrier.

A trusted URL's file is unpickled with ``weights_only=False`` only as
downloaded from the URL: a cached copy that holds more than weights is moved
aside and downloaded again.
"""
import os
import os.path as osp
import shutil
import tempfile
from typing import Optional

import torch

from mmdag.fileio import TEMP_SUFFIX
from .local import CheckpointError, _first_line, _load_trusted, _refusal, _trusted
from .weights_only import _load_weights_only, _NotWeights

REFUSED_SUFFIX = '.refused'


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
