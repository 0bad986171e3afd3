"""mmdag: Dense Adversary Generation for MMSegmentation and MMDetection."""
import os
import os.path as osp
import re
import shutil
import sys

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = osp.dirname(osp.abspath(__file__))
#: shipped in the package's .mim folder (OpenMMLab's layout, as mmdet and
#: mmseg do): `mmdag test`, `mim test mmdag` and `mmdag::` configs find them
MIM_FILES = ('configs', 'tools')
#: mmengine reads it before a `pkg::` base config; mmdag lists no model metafiles
MODEL_INDEX = 'Import: []\n'


def version():
    with open(osp.join(osp.dirname(__file__), 'mmdag', 'version.py')) as f:
        return re.search(r"__version__ = '([^']+)'", f.read()).group(1)


def requirements(name):
    path = osp.join(osp.dirname(__file__), 'requirements', name)
    with open(path) as f:
        return [line.strip() for line in f if line.strip() and not line.startswith('#')]


def _ignore(directory, names):
    return [n for n in names if n == '__pycache__' or n.endswith('.pyc')]


def write_mim(target: str, link: bool) -> None:
    """Fill ``target`` (a package's .mim folder) with configs/ and tools/:
    copies for a wheel, links to the clone's for an editable install."""
    os.makedirs(target, exist_ok=True)
    for name in MIM_FILES:
        src, dst = osp.join(HERE, name), osp.join(target, name)
        if osp.islink(dst) or osp.isfile(dst):
            os.remove(dst)
        elif osp.isdir(dst):
            shutil.rmtree(dst)
        if link:
            os.symlink(osp.relpath(src, target), dst)
        else:
            shutil.copytree(src, dst, ignore=_ignore)
    with open(osp.join(target, 'model-index.yml'), 'w') as f:
        f.write(MODEL_INDEX)


class BuildWithMim(build_py):
    """build_py that also copies configs/ and tools/ into the built package's
    .mim (never into the source tree, which stays as git has it)."""

    def run(self):
        super().run()
        if not getattr(self, 'editable_mode', False):
            write_mim(osp.join(self.build_lib, 'mmdag', '.mim'), link=False)


# an editable install (pip install -e .) links the clone's folders instead
if any(cmd in sys.argv for cmd in ('develop', 'editable_wheel')):
    write_mim(osp.join(HERE, 'mmdag', '.mim'), link=True)


def long_description() -> str:
    """README.md as PyPI shows it. PyPI resolves no relative link, and this
    package names no project URL to make them absolute against, so a
    relative link keeps its text only and a relative picture is left out."""
    path = osp.join(osp.dirname(__file__), 'README.md')
    if not osp.exists(path):
        return ''
    with open(path) as f:
        text = f.read()
    link = re.compile(r'(!?)\[([^\]]*)\]\(([^)\s]+)\)')

    def absolute_only(m):
        if re.match(r'^[A-Za-z][A-Za-z0-9+.-]*:', m.group(3)):
            return m.group(0)
        return '' if m.group(1) else m.group(2)

    return link.sub(absolute_only, text)


setup(
    name='mmdag',
    version=version(),
    description=('Dense adversarial attacks (DAG, PGD, SegPGD, CosPGD, APGD, DetPGD, TOG) '
                 'for MMSegmentation and MMDetection'),
    long_description=long_description(),
    long_description_content_type='text/markdown',
    license='Apache License 2.0',
    packages=find_packages(exclude=('configs', 'tools', 'tests')),
    python_requires='>=3.8',
    # ranges only, torch never pinned: pip keeps a user's OpenMMLab stack;
    # mmcv (mminstall.txt) is matched to torch and CUDA by its installer and
    # checked at import (mmdag/stack.py), as OpenMMLab's own packages do
    install_requires=requirements('runtime.txt'),
    extras_require={'tests': requirements('tests.txt'), 'bench': requirements('bench.txt')},
    entry_points={'console_scripts': ['mmdag=mmdag.cli:main']},
    cmdclass={'build_py': BuildWithMim},
    zip_safe=False,
)
