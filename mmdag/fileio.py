"""Writing files that readers never see half-written.

A writer killed with SIGKILL (or SIGTERM, which runs no Python cleanup)
inside :func:`write_atomic` leaves its temporary file behind: hidden, named
``.<file name>.<random>.tmp``, so it never has a name a reader looks for.
:func:`remove_temporaries` clears them when the next run starts."""
import os
import os.path as osp
import tempfile
from typing import Iterable, Union

TEMP_SUFFIX = '.tmp'


def write_atomic(path: str, data: Union[str, bytes]) -> None:
    """Write ``data`` (text as UTF-8, or bytes) to ``path`` through a
    temporary file in the same folder, flushed to disk, then ``os.replace``:
    a reader (or a run killed meanwhile) sees the old file or the new one,
    never a partial one. The file keeps an existing file's mode (0644 new)."""
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.' + osp.basename(path) + '.', suffix=TEMP_SUFFIX,
                               dir=folder)
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data.encode('utf-8') if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, os.stat(path).st_mode & 0o777 if osp.exists(path) else 0o644)
        os.replace(tmp, path)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise


def is_temporary(name: str) -> bool:
    """Whether a file name is one of :func:`write_atomic`'s temporary files."""
    return name.startswith('.') and name.endswith(TEMP_SUFFIX) and name.count('.') >= 3


def remove_temporaries(folders: Iterable[str]) -> int:
    """Delete the temporary files that killed writers left in ``folders``
    (not recursive; missing folders are skipped); return how many. Call it
    only when no writer of these folders runs."""
    removed = 0
    for folder in folders:
        if not osp.isdir(folder):
            continue
        for name in os.listdir(folder):
            path = osp.join(folder, name)
            if is_temporary(name) and osp.isfile(path):
                try:
                    os.remove(path)
                    removed += 1
                except FileNotFoundError:
                    pass
    return removed
