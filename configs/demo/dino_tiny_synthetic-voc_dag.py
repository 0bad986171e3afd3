# The demo DINO attacked with DAG by config: the paper's settings, decoder
# queries as targets, the encoder's query selection fixed from the clean image
# (query_selection='rerun' lets the perturbed encoder choose again).
_base_ = ['./dino_tiny_synthetic-voc.py', '../_base_/dag_det_query.py']
test_evaluator = dict(
    _delete_=True,
    type='mmdag.AttackMetric',
    metric=dict(type='VOCMetric', metric='mAP', eval_mode='11points'))
