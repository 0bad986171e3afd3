"""mmdag: Dense Adversary Generation for MMSegmentation and MMDetection."""
import os.path as osp
import re

from setuptools import find_packages, setup


def version():
    with open(osp.join(osp.dirname(__file__), 'mmdag', 'version.py')) as f:
        return re.search(r"__version__ = '([^']+)'", f.read()).group(1)


def requirements(name):
    path = osp.join(osp.dirname(__file__), 'requirements', name)
    with open(path) as f:
        return [line.strip() for line in f if line.strip() and not line.startswith('#')]


setup(
    name='mmdag',
    version=version(),
    description='Dense Adversary Generation (DAG) for MMSegmentation and MMDetection',
    long_description=open(osp.join(osp.dirname(__file__), 'README.md')).read()
    if osp.exists(osp.join(osp.dirname(__file__), 'README.md')) else '',
    long_description_content_type='text/markdown',
    license='Apache License 2.0',
    packages=find_packages(exclude=('configs', 'tools', 'tests')),
    python_requires='>=3.8',
    # ranges only, torch never pinned: pip keeps a user's OpenMMLab stack;
    # mmcv (mminstall.txt) is matched to torch and CUDA by its installer and
    # checked at import (mmdag/stack.py), as OpenMMLab's own packages do
    install_requires=requirements('runtime.txt'),
    extras_require={'tests': requirements('tests.txt'), 'bench': requirements('bench.txt')},
    zip_safe=False,
)
