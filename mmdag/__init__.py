"""mmdag: Dense Adversary Generation (Xie et al., ICCV 2017) for OpenMMLab.

``import mmdag`` registers :class:`mmdag.engine.AttackHook`,
:class:`mmdag.evaluation.AttackMetric` and the target adapters under the
``mmdag`` scope, so configs use them through
``custom_imports=dict(imports=['mmdag'])``.

It first checks the installed OpenMMLab stack (:mod:`mmdag.stack`) and stops
with one line naming the fix when a package is outside the supported versions,
and lets mmengine resolve ``mmdag::`` config paths (:mod:`mmdag.paths`).
"""
from .stack import check_stack
from .version import __version__

check_stack()
from . import engine, evaluation, targets  # noqa: F401,E402
from .paths import register_config_scope  # noqa: E402

register_config_scope()

__all__ = ['__version__']
