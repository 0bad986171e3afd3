# DAG on the MMSegmentation zoo model deeplabv3_r50-d8_4xb4-20k_voc12aug-512x512 (Pascal VOC 2012 aug val).
# Checkpoint: see docs/user_guides/zoo_checkpoints.md; data: data/VOCdevkit/VOC2012.
_base_ = ['mmseg::deeplabv3/deeplabv3_r50-d8_4xb4-20k_voc12aug-512x512.py', '../_base_/dag_seg.py']
test_evaluator = dict(
    _delete_=True,
    type='mmdag.AttackMetric',
    metric=dict(type='IoUMetric', iou_metrics=['mIoU']))
