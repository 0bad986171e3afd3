"""mmdag: dense adversarial attacks for OpenMMLab models: Dense Adversary
Generation (DAG; Xie et al., ICCV 2017), the budgeted segmentation and
detection attacks (PGD, SegPGD, CosPGD, APGD, DetPGD, TOG's) and their
per-image worst case, on every MMSegmentation and MMDetection model.

``import mmdag`` registers the hooks (:class:`mmdag.engine.AttackHook` and
its companions), :class:`mmdag.evaluation.AttackMetric`, the attacks and
the target adapters under the
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
