# The zoo benchmark's default model list: the VOC zoo models of configs/dag/
# with the checkpoints docs/user_guides/zoo_checkpoints.md names. Each is
# attacked on its config's test set (mmseg: data/VOCdevkit/VOC2012, VOC12 val,
# 1,449 images; mmdet: data/VOCdevkit/, VOC07 test, 4,952 images) with the
# config's DAG settings.
#
#     python tools/zoo_benchmark.py configs/benchmark/voc_zoo.py --launcher pytorch --gpus 8
#
# An entry: name (its work dir), config, checkpoint (file, URL or 'random'),
# optional cfg_options / attack_options (dicts) and seed (for 'random').
# `defaults` is merged into every entry.
_seg = 'https://download.openmmlab.com/mmsegmentation/v0.5/'
_det = 'https://download.openmmlab.com/mmdetection/v2.0/pascal_voc/'
models = [
    dict(name='fcn_r50-d8_voc12aug',
         config='configs/dag/fcn_r50-d8_4xb4-20k_voc12aug-512x512_dag.py',
         checkpoint=_seg + 'fcn/fcn_r50-d8_512x512_20k_voc12aug/'
         'fcn_r50-d8_512x512_20k_voc12aug_20200617_010715-52dc5306.pth'),
    dict(name='deeplabv3_r50-d8_voc12aug',
         config='configs/dag/deeplabv3_r50-d8_4xb4-20k_voc12aug-512x512_dag.py',
         checkpoint=_seg + 'deeplabv3/deeplabv3_r50-d8_512x512_20k_voc12aug/'
         'deeplabv3_r50-d8_512x512_20k_voc12aug_20200617_010906-596905ef.pth'),
    dict(name='pspnet_r50-d8_voc12aug',
         config='configs/dag/pspnet_r50-d8_4xb4-20k_voc12aug-512x512_dag.py',
         checkpoint=_seg + 'pspnet/pspnet_r50-d8_512x512_20k_voc12aug/'
         'pspnet_r50-d8_512x512_20k_voc12aug_20200617_101958-ed5dfbd9.pth'),
    dict(name='faster-rcnn_r50_fpn_voc0712',
         config='configs/dag/faster-rcnn_r50_fpn_1x_voc0712_dag.py',
         checkpoint=_det + 'faster_rcnn_r50_fpn_1x_voc0712/'
         'faster_rcnn_r50_fpn_1x_voc0712_20200624-c9895d40.pth'),
    dict(name='retinanet_r50_fpn_voc0712',
         config='configs/dag/retinanet_r50_fpn_1x_voc0712_dag.py',
         checkpoint=_det + 'retinanet_r50_fpn_1x_voc0712/'
         'retinanet_r50_fpn_1x_voc0712_20200617-47cbdd0e.pth'),
    dict(name='ssd300_voc0712',
         config='configs/dag/ssd300_voc0712_dag.py',
         checkpoint=_det + 'ssd300_voc0712/ssd300_voc0712_20220320_194658-17edda1b.pth'),
]
