from mmdag.registry import METRICS, keep_old_names
from .attack_metric import AttackMetric

__all__ = ['AttackMetric']

#: The metric wrapper's name before 0.2 (named after DAG): configs
#: that say ``mmdag.DAGMetric`` still build, and the old import resolves
#: (with a DeprecationWarning).
OLD_NAMES = {'DAGMetric': AttackMetric}

__getattr__ = keep_old_names(METRICS, __name__, OLD_NAMES)
