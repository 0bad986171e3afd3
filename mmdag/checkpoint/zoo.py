"""Zoo names, and the refusal of every other scheme.

:func:`load_checkpoint_zoo` loads ``open-mmlab://``, ``openmmlab://``,
``mmcls://``, ``torchvision://`` and ``modelzoo://`` names, resolved
(:func:`resolve_zoo_name`) to a URL (or, for an open-mmlab name, a file under
mmengine's home) with mmengine's own tables, then loaded as
:func:`mmdag.checkpoint.load_checkpoint_url` and
:func:`mmdag.checkpoint.load_checkpoint_file` load them. Every other scheme
(``pavi://``, ``s3://``, ``petrel://``, anything else registered) is refused
in one line that says to download the file and pass its local path
(:func:`refuse_checkpoint_scheme`).
"""
import os.path as osp
import re
from typing import Tuple

from .local import CheckpointError, _load_local, _trusted
from .url import _load_url

#: the mm zoo names mmengine's CheckpointLoader resolves (mmdag resolves them the same way)
ZOO_SCHEMES = ('open-mmlab://', 'openmmlab://', 'mmcls://', 'torchvision://', 'modelzoo://')
#: the URL-like checkpoint names mmdag loads (anything else with ``://`` is refused)
URL_SCHEMES = ('http://', 'https://') + ZOO_SCHEMES


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
