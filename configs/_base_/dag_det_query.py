# DAG on a detection test set (DETR-like detectors: DETR, Conditional DETR,
# DAB-DETR, Deformable DETR, DINO, DDQ-DETR). Targets: the decoder queries
# whose clean box overlaps a ground-truth box (IoU >= 0.1) and that detect its
# class on the clean image; logits: the last decoder layer's. "Still correct":
# DETR's softmax head the argmax (no-object never an adversarial label);
# sigmoid heads a true-class score above score_thr (None: the head's test
# score_thr, else 0.05). Two-stage query selection (DINO, DDQ, two-stage
# Deformable DETR) is fixed from the clean image ('rerun' lets the perturbed
# encoder choose again). The paper's settings: gamma 0.5, at most 200
# iterations, random wrong labels. A config using this base also wraps its
# test_evaluator in mmdag.AttackMetric.
custom_imports = dict(imports=['mmdag'], allow_failed_imports=False)
custom_hooks = [
    dict(
        type='mmdag.AttackHook',
        attack=dict(gamma=0.5, max_iters=200, adv_labels='random', seed=0),
        targets=dict(iou_thr=0.1, score_thr=None, query_selection='fixed'),
        variants=('orig', 'perm', 'advr_uint8')),
    # the pictures, the report and records, the state a killed run resumes from
    dict(type='mmdag.AttackFigureHook', num_figures=4),
    dict(type='mmdag.AttackReportHook'),
    dict(type='mmdag.AttackResumeHook'),
    # weights-only checkpoint loading; refuses a checkpoint that does not fit the model
    dict(type='mmdag.CheckpointCheckHook')
]
