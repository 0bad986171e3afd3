"""mmdag: Dense Adversary Generation (Xie et al., ICCV 2017) for OpenMMLab.

``import mmdag`` registers :class:`mmdag.engine.DAGAttackHook`,
:class:`mmdag.evaluation.DAGMetric` and the target adapters under the
``mmdag`` scope, so configs use them through
``custom_imports=dict(imports=['mmdag'])``.
"""
from .version import __version__
from . import engine, evaluation, targets  # noqa: F401

__all__ = ['__version__']
