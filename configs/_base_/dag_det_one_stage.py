# DAG on a detection test set (one-stage detectors: RetinaNet, FCOS, ATSS, SSD,
# YOLOv3). Targets: the priors (anchors/points) the head's own assigner matches
# to ground truth on the clean image. Sigmoid heads: a target is "still
# correct" while its true class scores above the head's test score_thr
# (score_thr=None: the head's own); softmax heads (SSD): argmax, as in the
# paper. The paper's settings: gamma 0.5, at most 200 iterations, random wrong
# labels, background never an adversarial label. A config using this base also
# wraps its test_evaluator in mmdag.AttackMetric.
custom_imports = dict(imports=['mmdag'], allow_failed_imports=False)
custom_hooks = [
    dict(
        type='mmdag.AttackHook',
        attack=dict(gamma=0.5, max_iters=200, adv_labels='random', seed=0),
        targets=dict(score_thr=None),
        variants=('orig', 'perm', 'advr_uint8')),
    # the pictures, the report and records, the state a killed run resumes from
    dict(type='mmdag.AttackFigureHook', num_figures=4),
    dict(type='mmdag.AttackReportHook'),
    dict(type='mmdag.AttackResumeHook'),
    # weights-only checkpoint loading; refuses a checkpoint that does not fit the model
    dict(type='mmdag.CheckpointCheckHook')
]
