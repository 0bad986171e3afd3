# The demo segmentor attacked with DAG by config: the paper's settings.
_base_ = ['./fcn_tiny_synthetic-voc.py', '../_base_/dag_seg.py']
test_evaluator = dict(
    _delete_=True,
    type='mmdag.AttackMetric',
    metric=dict(type='IoUMetric', iou_metrics=['mIoU']))
