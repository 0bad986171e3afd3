"""mmdag's registries: children of mmengine's, under the ``mmdag`` scope.

Configs of any OpenMMLab library name mmdag's pieces as ``mmdag.DAGAttackHook``
or ``mmdag.DAGMetric`` after ``custom_imports=dict(imports=['mmdag'])``.
Parents are mmengine's root registries (not mmseg's or mmdet's), so the names
resolve under either library's default scope.
"""
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODEL_WRAPPERS as MMENGINE_MODEL_WRAPPERS
from mmengine.registry import Registry

HOOKS = Registry('hook', parent=MMENGINE_HOOKS, scope='mmdag', locations=['mmdag.engine'])
METRICS = Registry('metric', parent=MMENGINE_METRICS, scope='mmdag',
                   locations=['mmdag.evaluation'])
MODEL_WRAPPERS = Registry('model_wrapper', parent=MMENGINE_MODEL_WRAPPERS, scope='mmdag',
                          locations=['mmdag.engine'])
#: Target adapters (model family -> TargetSet builder).
TARGETS = Registry('dag target', scope='mmdag', locations=['mmdag.targets'])
