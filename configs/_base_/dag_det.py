# DAG on a detection test set (two-stage detectors: Faster/Mask/Cascade R-CNN).
# Targets: the detector's own RPN proposals on the clean image, made dense
# (NMS IoU 0.9, 3000 kept), kept when IoU with a ground-truth box > 0.1 and the
# clean score of its class > 0.1, fixed during the attack. The paper's settings:
# gamma 0.5, at most 200 iterations (the authors' code: 150), random wrong
# labels, background never an adversarial label. A config using this base
# also wraps its test_evaluator in mmdag.AttackMetric.
custom_imports = dict(imports=['mmdag'], allow_failed_imports=False)
custom_hooks = [
    dict(
        type='mmdag.AttackHook',
        attack=dict(gamma=0.5, max_iters=200, adv_labels='random', seed=0),
        targets=dict(rpn_nms_iou=0.9, rpn_max_per_img=3000, iou_thr=0.1, score_thr=0.1),
        variants=('orig', 'perm', 'advr_uint8')),
    # the pictures, the report and records, the state a killed run resumes from
    dict(type='mmdag.AttackFigureHook', num_figures=4),
    dict(type='mmdag.AttackReportHook'),
    dict(type='mmdag.AttackResumeHook'),
    # weights-only checkpoint loading; refuses a checkpoint that does not fit the model
    dict(type='mmdag.CheckpointCheckHook')
]
