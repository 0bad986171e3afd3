from .dag_metric import DAGMetric

__all__ = ['DAGMetric']
