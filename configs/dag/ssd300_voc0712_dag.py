# DAG on the MMDetection zoo SSD300 VGG16 (Pascal VOC 07+12, VOC2007 test).
# Checkpoint: see docs/user_guides/zoo_checkpoints.md; data: data/VOCdevkit/VOC2007.
# The zoo config has its own custom_hooks, and mmengine refuses a key defined
# by two bases: the DAG pieces of ../_base_/dag_det_one_stage.py are written
# out here, after the zoo hooks.
_base_ = ['mmdet::pascal_voc/ssd300_voc0712.py']
custom_imports = dict(imports=['mmdag'], allow_failed_imports=False)
custom_hooks = [
    dict(type='NumClassCheckHook'),
    dict(type='CheckInvalidLossHook', interval=50, priority='VERY_LOW'),
    dict(
        type='mmdag.AttackHook',
        attack=dict(gamma=0.5, max_iters=200, adv_labels='random', seed=0),
        targets=dict(score_thr=None),
        variants=('orig', 'perm', 'advr_uint8')),
    # the pictures, the report and records, the state a killed run resumes from
    dict(type='mmdag.AttackFigureHook', num_figures=4),
    dict(type='mmdag.AttackReportHook'),
    dict(type='mmdag.AttackResumeHook')
]
test_evaluator = dict(
    _delete_=True,
    type='mmdag.AttackMetric',
    metric=dict(type='VOCMetric', metric='mAP', eval_mode='11points'))
