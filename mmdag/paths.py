"""Where mmdag's configs and tools are, from a clone or from an installed wheel.

A wheel carries them in OpenMMLab's ``.mim`` layout (``mmdag/.mim/configs``,
``mmdag/.mim/tools``, as mmdet and mmseg ship theirs); a clone has them at its
top level. :func:`project_root` answers for both, so the tools and the
``mmdag`` command work from any directory.

``mmdag::`` config references (``_base_ = 'mmdag::_base_/dag_seg.py'``) are
resolved by mmengine once ``import mmdag`` has run :func:`register_config_scope`.
"""
import os.path as osp
from typing import Optional

PACKAGE_DIR = osp.dirname(osp.abspath(__file__))
#: the wheel's copy (or an editable install's links) of configs/ and tools/
MIM_DIR = osp.join(PACKAGE_DIR, '.mim')


def project_root() -> str:
    """The directory holding ``configs/`` and ``tools/``: the package's
    ``.mim`` when installed, else the clone the package sits in."""
    for root in (MIM_DIR, osp.dirname(PACKAGE_DIR)):
        if osp.isdir(osp.join(root, 'configs')) and osp.isdir(osp.join(root, 'tools')):
            return root
    raise FileNotFoundError(f'mmdag\'s configs/ and tools/ are neither in {MIM_DIR} nor beside '
                            f'{PACKAGE_DIR}: reinstall mmdag (pip install mmdag) or use a clone')


def tool_path(name: str) -> str:
    """``'test'`` -> the path of ``tools/test.py``."""
    return osp.join(project_root(), 'tools', name if name.endswith('.py') else name + '.py')


def resolve_config(path: str) -> str:
    """A config argument as the tools accept it:

    - ``mmdag::dag/x.py`` -> mmdag's ``configs/dag/x.py``;
    - an existing file -> itself;
    - ``configs/...`` that is not a file here -> mmdag's own, so the README's
      commands work from any directory.

    Anything else is returned unchanged (the caller reports it missing).
    """
    if path.startswith('mmdag::'):
        return osp.join(project_root(), 'configs', path[len('mmdag::'):])
    if osp.isfile(path):
        return path
    rel = osp.normpath(path)
    if rel.startswith('configs' + osp.sep):
        try:
            own = osp.join(project_root(), rel)
        except FileNotFoundError:
            return path
        if osp.isfile(own):
            return own
    return path


def _installed_path(original):
    def get_installed_path(package: str) -> str:
        if package == 'mmdag':
            return PACKAGE_DIR
        return original(package)
    get_installed_path.__wrapped__ = original
    return get_installed_path


def register_config_scope() -> Optional[str]:
    """Let mmengine resolve ``mmdag::`` config paths.

    mmengine knows OpenMMLab's packages by a fixed table and finds their files
    from the distribution's location, which for a PEP 660 editable install is
    site-packages, not the clone. mmdag adds itself to the table and answers
    its own location (the package directory, whose ``.mim`` holds the
    configs); every other package is resolved by mmengine as before.
    """
    try:
        from mmengine.config import config as config_module
        from mmengine.config import utils as config_utils
    except ImportError:   # pragma: no cover - mmengine is a requirement
        return None
    config_utils.MODULE2PACKAGE.setdefault('mmdag', 'mmdag')
    current = config_module.get_installed_path
    if not hasattr(current, '__wrapped__'):
        config_module.get_installed_path = _installed_path(current)
    return PACKAGE_DIR
