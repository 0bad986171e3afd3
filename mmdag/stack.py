"""The OpenMMLab stack mmdag supports, checked once at ``import mmdag``.

Versions are read from the installed distributions' metadata, so the check
imports none of the packages (``import mmdag`` stays cheap); a package used
from a source tree without metadata is imported for its ``__version__``. A package
outside its range stops the import with one line naming the fix, as mmdet
does for mmcv. The window is the one the checks run on: the newest stack
(``requirements/pinned.txt``, the demo's and CI's) and the oldest (torch 2.1
with OpenMMLab's mmcv 2.1.0, the stack most mmdet 3.x / mmseg 1.x users
have).
"""
import re
from importlib import import_module, metadata
from typing import Dict, Optional, Tuple

#: distribution -> (oldest supported, first unsupported or None, the fix)
SUPPORTED: Dict[str, Tuple[str, Optional[str], str]] = {
    'torch': ('2.1.0', None, 'install a torch >= 2.1 build for your CUDA (pytorch.org), '
                             'then mmcv for that torch'),
    'mmengine': ('0.10.0', '1.0.0', 'pip install "mmengine>=0.10.0,<1.0.0"'),
    'mmcv': ('2.0.0', '2.2.0', 'pip install "mmcv>=2.0.0,<2.2.0" (OpenMMLab\'s prebuilt '
                               'wheels: mim install "mmcv==2.1.0")'),
    'mmdet': ('3.3.0', '3.4.0', 'pip install "mmdet>=3.3.0,<3.4.0"'),
    'mmsegmentation': ('1.2.0', '1.3.0', 'pip install "mmsegmentation>=1.2.0,<1.3.0"'),
}


class UnsupportedStackError(ImportError):
    """An installed OpenMMLab stack outside mmdag's supported versions."""


def version_tuple(text: str) -> Tuple[int, ...]:
    """``'2.1.2+cu121'`` -> ``(2, 1, 2)``; pre-releases (``2.0.0rc4``) sort
    before their release."""
    m = re.match(r'(\d+(?:\.\d+)*)(?:\.?(a|b|rc|dev)(\d*))?', text.strip())
    if not m:
        raise ValueError(f'not a version: {text!r}')
    nums = tuple(int(x) for x in m.group(1).split('.'))
    nums = nums + (0, ) * (3 - len(nums))
    # a release sorts after its pre-releases
    return nums + ((-1, int(m.group(3) or 0)) if m.group(2) else (0, 0))


#: the module each distribution installs
MODULES = {'torch': 'torch', 'mmengine': 'mmengine', 'mmcv': 'mmcv', 'mmdet': 'mmdet',
           'mmsegmentation': 'mmseg'}


def installed_versions() -> Dict[str, Optional[str]]:
    """Each package's version from its distribution's metadata, or, for a
    package used from a source tree without metadata (mmcv built in place
    and put on ``PYTHONPATH``), from its module's ``__version__``."""
    found = {}
    for name in SUPPORTED:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            try:
                found[name] = str(import_module(MODULES[name]).__version__)
            except ImportError:
                found[name] = None
    return found


def check_stack(versions: Optional[Dict[str, Optional[str]]] = None) -> None:
    """Raise :class:`UnsupportedStackError` (one line) for the first package
    that is missing or outside :data:`SUPPORTED`."""
    from .version import __version__
    versions = installed_versions() if versions is None else versions
    for name, (low, high, fix) in SUPPORTED.items():
        found = versions.get(name)
        want = f'{name}>={low}' + (f',<{high}' if high else '')
        if found is None:
            raise UnsupportedStackError(f'mmdag {__version__} needs {want}, which is not '
                                        f'installed: {fix}')
        v = version_tuple(found)
        if v < version_tuple(low) or (high and v >= version_tuple(high)):
            raise UnsupportedStackError(f'mmdag {__version__} needs {want}; this environment has '
                                        f'{name} {found}: {fix}')
