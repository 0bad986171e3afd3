# The demo detector attacked with DAG by config: the paper's settings.
_base_ = ['./faster-rcnn_tiny_synthetic-voc.py', '../_base_/dag_det.py']
test_evaluator = dict(
    _delete_=True,
    type='mmdag.AttackMetric',
    metric=dict(type='VOCMetric', metric='mAP', eval_mode='11points'))
