# DAG on a segmentation test set: the hook attacks every test batch. A config
# using this base also wraps its test_evaluator in mmdag.AttackMetric (bases may
# not both set one key), which reports the metric on orig / advr / perm and the
# attack statistics.
# The paper's settings: gamma 0.5 (0..255 scale), at most 200 iterations,
# a random wrong label per pixel, stop when no pixel is still correct.
custom_imports = dict(imports=['mmdag'], allow_failed_imports=False)
custom_hooks = [
    dict(
        type='mmdag.AttackHook',
        attack=dict(
            gamma=0.5,
            max_iters=200,
            adv_labels='random',
            stop_fraction=0.0,
            epsilon=None,
            quantize=False,
            seed=0),
        variants=('orig', 'perm', 'advr_uint8')),
    # the pictures, the report and records, the state a killed run resumes from
    dict(type='mmdag.AttackFigureHook', num_figures=4),
    dict(type='mmdag.AttackReportHook'),
    dict(type='mmdag.AttackResumeHook'),
    # weights-only checkpoint loading; refuses a checkpoint that does not fit the model
    dict(type='mmdag.CheckpointCheckHook')
]
