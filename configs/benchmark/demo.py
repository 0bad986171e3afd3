# The zoo benchmark's demo list: runs on a CPU in minutes.
#
#     python tools/demo.py --train-only             # the two demo models (cached)
#     python tools/zoo_benchmark.py configs/benchmark/demo.py
#
# (`make benchmark-demo` does both.) Two demo models, trained by tools/demo.py
# on the synthetic VOC set, and a zoo model with random weights at the
# synthetic images' size (160x120): the zoo FCN-R50-D8 VOC config, a check
# that a zoo config runs the whole chain, not a robustness figure.
# MMDAG_DEMO_DIR and MMDAG_DEMO_DATA move the demo's work dir and data.
demo_dir = '{{$MMDAG_DEMO_DIR:work_dirs/demo}}'
data = '{{$MMDAG_DEMO_DATA:data/synthetic_voc}}'
models = [
    dict(name='demo_fcn',
         config='configs/demo/fcn_tiny_synthetic-voc_dag.py',
         checkpoint=demo_dir + '/seg_train/model.pth',
         cfg_options={'test_dataloader.dataset.data_root': data + '/VOCdevkit/VOC2012'}),
    dict(name='demo_faster-rcnn',
         config='configs/demo/faster-rcnn_tiny_synthetic-voc_dag.py',
         checkpoint=demo_dir + '/det_train/model.pth',
         # the detector's CPU attack is the slow one: 16 of the 40 val images
         cfg_options={'test_dataloader.dataset.data_root': data + '/VOCdevkit/',
                      'test_dataloader.dataset.indices': 16}),
    dict(name='zoo_fcn_r50-d8_random',
         config='configs/dag/fcn_r50-d8_4xb4-20k_voc12aug-512x512_dag.py',
         checkpoint='random', seed=0,
         cfg_options={'test_dataloader.dataset.data_root': data + '/VOCdevkit/VOC2012',
                      'test_dataloader.dataset.pipeline.1.scale': (160, 120),
                      'test_dataloader.dataset.indices': 8},
         attack_options=dict(max_iters=20)),
]
# Besides DAG, on every segmentation model: PGD and SegPGD at 4/255, and the
# worst case of the two per image, in one run per model (DIR/<name>/attacks);
# on every detector: DetPGD and TOG vanishing, and their worst case.
# --attacks, --det-attacks and --budget-options override these; `none` skips.
attacks = ['pgd', 'segpgd']
det_attacks = ['detpgd', 'togvanishing']
budget_options = dict(epsilon=4, max_iters=10)
