# DAG on the MMDetection zoo Faster R-CNN R50-FPN (Pascal VOC 07+12, VOC2007 test).
# Checkpoint: see docs/user_guides/zoo_checkpoints.md; data: data/VOCdevkit/VOC2007.
_base_ = ['mmdet::pascal_voc/faster-rcnn_r50_fpn_1x_voc0712.py', '../_base_/dag_det.py']
test_evaluator = dict(
    _delete_=True,
    type='mmdag.AttackMetric',
    metric=dict(type='VOCMetric', metric='mAP', eval_mode='11points'))
