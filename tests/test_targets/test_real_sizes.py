"""Zoo R50 models at the sizes users feed them (random weights, 2 iterations).

VOC after the zoo test pipelines: 512x683 for mmseg's FCN (Resize to
(2048, 512), keep ratio, of a 375x500 picture); 600x1000 and 1000x600 in one
batch for mmdet's detectors (Resize to (1000, 600), landscape and portrait).
"""
import pytest
import torch
from mmengine.model.utils import revert_sync_batchnorm
from mmengine.registry import init_default_scope
from mmengine.structures import InstanceData, PixelData

from mmdag.apis import attack_batch
from mmdag.attacks import DAG
from mmdag.engine.step import attack_mode, image_seeds
from mmdag.targets import build_targets
from mmdag.targets.batching import canvas_groups, grouped_test_step
from conftest import zoo_config

pytestmark = pytest.mark.slow


def test_fcn_r50_at_voc_size():
    from mmseg.registry import MODELS
    from mmseg.structures import SegDataSample
    init_default_scope('mmseg')
    cfg = zoo_config('mmseg::fcn/fcn_r50-d8_4xb4-20k_voc12aug-512x512.py').model
    cfg.pretrained = None
    torch.manual_seed(0)
    model = revert_sync_batchnorm(MODELS.build(cfg)).eval()
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(3, 512, 683, generator=g) * 255).round().to(torch.uint8)
    s = SegDataSample(metainfo=dict(img_shape=(512, 683), ori_shape=(375, 500),
                                    scale_factor=(683 / 500, 512 / 375), img_path='voc.jpg'))
    lab = torch.zeros(1, 375, 500, dtype=torch.long)
    lab[:, 100:300, 150:400] = 15
    lab[:, 95:100] = 255
    s.gt_sem_seg = PixelData(data=lab)
    res, targets = attack_batch(model, dict(inputs=[x], data_samples=[s]),
                                dict(max_iters=2, gamma=0.5))
    assert tuple(res.adv_images[0].shape) == (3, 512, 683)
    assert len(targets.labels[0]) == 375 * 500 - 5 * 500    # every labelled pixel
    # random weights get few ground-truth pixels right: attack the clean
    # prediction so that the real-size attack surely runs its two steps
    res, targets = attack_batch(model, dict(inputs=[x], data_samples=[s]),
                                dict(max_iters=2, gamma=0.5), dict(use_gt=False))
    st = res.stats[0]
    assert st['status'] == 'max_iters' and st['iters'] == 2 and st['backwards'] == 2, st
    # the clean prediction in the metric's frame (the original 375x500 image)
    assert st['num_correct'] == len(targets.labels[0]) == 375 * 500
    assert 0.5 < st['linf'] <= 1.0 + 1e-4 and st['correct_frac'] < 1


@pytest.mark.parametrize('name', ['faster-rcnn', 'retinanet'])
def test_r50_fpn_detectors_at_voc_sizes_in_one_batch(name):
    from mmdet.registry import MODELS
    from mmdet.structures import DetDataSample
    init_default_scope('mmdet')
    path = {'faster-rcnn': 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py',
            'retinanet': 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'}[name]
    cfg = zoo_config(path).model
    cfg.backbone.init_cfg = None
    torch.manual_seed(0)
    model = revert_sync_batchnorm(MODELS.build(cfg)).eval()
    g = torch.Generator().manual_seed(1)
    inputs, samples = [], []
    for k, (h, w) in enumerate([(600, 1000), (1000, 600)]):
        inputs.append((torch.rand(3, h, w, generator=g) * 255).round().to(torch.uint8))
        s = DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h // 2, w // 2),
                                        scale_factor=(2.0, 2.0), img_path=f'voc_{k}.jpg'))
        # a large and a small object (original frame: half the input)
        s.gt_instances = InstanceData(
            bboxes=torch.tensor([[0.1 * w / 2, 0.1 * h / 2, 0.6 * w / 2, 0.7 * h / 2],
                                 [0.6 * w / 2, 0.6 * h / 2, 0.7 * w / 2, 0.7 * h / 2]]),
            labels=torch.tensor([14, 2]))
        samples.append(s)
    assert len(canvas_groups(model, inputs)) == 2   # 608x1024 and 1024x608
    targets_cfg = dict(score_thr=0.0, rpn_max_per_img=1000) if name == 'faster-rcnn' \
        else dict(score_thr=1e-6)
    images = [x.float() for x in inputs]
    with attack_mode(model):
        targets = build_targets(model, images, samples, **targets_cfg)
        assert all(len(lab) > 0 for lab in targets.labels)
        if name == 'faster-rcnn':
            # random weights rarely score a box's class first (both images ended
            # none_correct after 0 steps): attack the clean prediction instead
            with torch.no_grad():
                targets.labels = [z.argmax(1) for z in targets.logits(images, [0, 1])]
        res = DAG(max_iters=2, gamma=0.5)(images, targets, seeds=image_seeds(samples))
    assert [tuple(x.shape[-2:]) for x in res.adv_images] == [(600, 1000), (1000, 600)]
    # the real-size attack ran: two steps on every image, each of L-inf 0.5
    for st, lab in zip(res.stats, targets.labels):
        assert st['status'] == 'max_iters' and st['iters'] == 2 and st['backwards'] == 2, st
        assert st['num_correct'] > 0 and 0.5 < st['linf'] <= 1.0 + 1e-4
    with torch.no_grad():
        preds = grouped_test_step(model, dict(inputs=res.adv_images,
                                              data_samples=[s.clone() for s in samples]))
    assert [p.img_path for p in preds] == ['voc_0.jpg', 'voc_1.jpg']
