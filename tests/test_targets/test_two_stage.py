"""The two-stage detection adapter on mmdet zoo configs built with random weights."""
import pytest
import torch
from mmengine.model.utils import revert_sync_batchnorm
from mmengine.registry import init_default_scope
from mmengine.structures import InstanceData

from mmdag.attacks import DAG
from mmdag.engine.step import attack_mode
from mmdag.targets import TwoStageTargets, find_adapter
from conftest import eq1_loss, zoo_config

ZOO = {
    'faster_fpn': 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py',
    'faster_c4': 'mmdet::faster_rcnn/faster-rcnn_r50-caffe_c4-1x_coco.py',
    'cascade': 'mmdet::cascade_rcnn/cascade-rcnn_r50_fpn_1x_coco.py',
    'mask': 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py',
}
# random weights score every class about 1/81: keep every overlapping proposal
TARGETS = dict(score_thr=0.0, rpn_max_per_img=300)  # fewer RoIs: fast on a CPU


def build(name):
    from mmdet.registry import MODELS
    init_default_scope('mmdet')
    cfg = zoo_config(ZOO[name]).model
    cfg.backbone.pop('init_cfg', None)
    if 'neck' in cfg:   # a slimmer backbone, same heads and decode path
        cfg.backbone.depth = 18
        cfg.neck.in_channels = [64, 128, 256, 512]
    torch.manual_seed(0)
    return revert_sync_batchnorm(MODELS.build(cfg)).eval()


def make_batch(num=2, h=96, w=128, seed=0):
    from mmdet.structures import DetDataSample
    g = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for k in range(num):
        inputs.append((torch.rand(3, h, w, generator=g) * 255).round().to(torch.uint8))
        s = DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h // 2, w // 2),
                                        scale_factor=(2.0, 2.0), img_path=f'det_{k}.jpg'))
        # boxes in the original frame (the zoo pipelines load them after Resize)
        s.gt_instances = InstanceData(bboxes=torch.tensor([[5.0, 5.0, 30.0, 25.0],
                                                           [20.0, 10.0, 60.0, 45.0]]),
                                      labels=torch.tensor([3, 17]))
        samples.append(s)
    return dict(inputs=inputs, data_samples=samples)


# Cascade R-CNN has three stages: it runs with the slow checks. The C4 Faster
# R-CNN keeps its ResNet-50 (no neck to slim): about 2.5 min on 2 CPU cores,
# so it runs with the zoo survey (make test-zoo), by hand
MARKS = {'cascade': [pytest.mark.slow], 'faster_c4': [pytest.mark.slow, pytest.mark.zoo]}


@pytest.mark.parametrize('name', [pytest.param(n, marks=MARKS.get(n, ())) for n in sorted(ZOO)])
def test_two_stage_zoo_detectors_attack_reduces_eq1(name):
    model = build(name)
    assert find_adapter(model) is TwoStageTargets
    batch = make_batch()
    images = [x.float() for x in batch['inputs']]
    with attack_mode(model):
        t = TwoStageTargets(model, images, batch['data_samples'], **TARGETS)
        assert all(len(lab) > 0 for lab in t.labels)
        assert all(set(lab.tolist()) <= {3, 17} for lab in t.labels)
        # random weights rarely score the true class first: take the clean
        # prediction as the label so that every target starts active
        with torch.no_grad():
            t.labels = [z.argmax(1) for z in t.logits(images, [0, 1])]
        res = DAG(max_iters=2, gamma=1.0)(images, t)
    assert all(s['iters'] == 2 for s in res.stats)
    before = eq1_loss(t, batch['inputs'], res.adv_labels)
    assert eq1_loss(t, res.adv_images, res.adv_labels) < before
    # vanishing on the same (matched) targets: the background class gains
    from mmdag.attacks import MatchedVanishing
    assert t.background == t.num_classes - 1 == t.exclude_adv[0]
    with attack_mode(model):
        van = MatchedVanishing(max_iters=3)(images, t)
        with torch.no_grad():
            bg = [torch.cat([z.softmax(1)[:, t.background] for z in t.logits(xs, [0, 1])])
                  for xs in (images, van.adv_images)]
    assert bg[1].mean() > bg[0].mean()
    bg = t.num_classes - 1
    assert all((a != bg).all() for a in res.adv_labels)


def test_proposals_are_dense_and_stay_fixed():
    model = build('faster_fpn')
    batch = make_batch(num=1)
    images = [x.float() for x in batch['inputs']]
    sparse = TwoStageTargets(model, images, batch['data_samples'], rpn_nms_iou=0.7,
                             rpn_max_per_img=1000, score_thr=0.0)
    dense = TwoStageTargets(model, images, batch['data_samples'], score_thr=0.0)
    assert len(dense.labels[0]) > len(sparse.labels[0])

    def no_rpn(*args, **kwargs):
        raise AssertionError('the RPN ran during the attack')
    model.rpn_head.forward = no_rpn
    with torch.enable_grad():
        z = dense.logits([images[0].clone().requires_grad_(True)], [0])[0]
    assert z.shape == (len(dense.labels[0]), 81)


def test_gt_boxes_are_scaled_to_the_input_frame():
    model = build('faster_fpn')
    batch = make_batch(num=1)
    images = [x.float() for x in batch['inputs']]
    t = TwoStageTargets(model, images, batch['data_samples'], iou_thr=0.5, **TARGETS)
    from mmdet.structures.bbox import bbox_overlaps
    gt = batch['data_samples'][0].gt_instances.bboxes * 2
    assert len(t.boxes[0]) > 0
    assert (bbox_overlaps(t.boxes[0], gt).max(1).values > 0.5).all()


@pytest.mark.parametrize('cfg,reason', [
    ('mmdet::rpn/rpn_r50_fpn_1x_coco.py', 'scores 1 class: DAG needs an adversarial label'),
    ('mmdet::wider_face/retinanet_r50_fpn_1x_widerface.py',
     'RetinaNet with RetinaHead scores 1 class'),
    (None, 'no DAG target adapter for Conv2d')])
def test_families_without_adapter_get_one_clear_error(cfg, reason):
    from mmdet.registry import MODELS

    from mmdag.errors import UnsupportedModelError
    init_default_scope('mmdet')
    if cfg is None:
        model = torch.nn.Conv2d(3, 2, 1)
    else:
        c = zoo_config(cfg).model
        c.backbone.pop('init_cfg', None)
        model = MODELS.build(c)
    with pytest.raises(UnsupportedModelError) as e:
        find_adapter(model)
    msg = str(e.value)
    assert '\n' not in msg and 'two-stage' in msg and 'EncoderDecoder' in msg
    assert 'one-stage' in msg and 'RetinaHead' in msg and 'DINO' in msg and reason in msg
    assert 'Mask2Former (panoptic, instance)' in msg


def test_building_targets_leaves_the_models_predictions_unchanged():
    """The dense RPN settings are the adapter's own: the detector's test_cfg,
    and so ORIG / ADVR / PERM predictions, must not change (a shallow
    ConfigDict.update once changed the RPN's NMS to 0.9 for every later
    prediction)."""
    import copy
    model = build('faster_fpn')
    batch = make_batch(num=1)
    before_cfg = copy.deepcopy(model.rpn_head.test_cfg.to_dict())
    with torch.no_grad():
        before = model.test_step(copy.deepcopy(batch))[0].pred_instances
    with attack_mode(model):
        TwoStageTargets(model, [x.float() for x in batch['inputs']], batch['data_samples'],
                        **TARGETS)
    assert model.rpn_head.test_cfg.to_dict() == before_cfg
    with torch.no_grad():
        after = model.test_step(copy.deepcopy(batch))[0].pred_instances
    assert torch.equal(before.bboxes, after.bboxes) and torch.equal(before.scores, after.scores)


def test_a_proposal_takes_the_largest_iou_box_among_those_that_pass_both_tests():
    from mmdag.targets.two_stage import assign_proposals

    # proposal 0 overlaps box A (class 3) most, but its clean score of class 3
    # is under 0.1; box B (class 17) passes both tests: the authors' code
    # keeps the proposal with label 17 (the former rule dropped it)
    iou = torch.tensor([[0.6, 0.3], [0.6, 0.05], [0.5, 0.4], [0.05, 0.08]])
    probs = torch.full((4, 21), 0.01)
    probs[:, 17] = 0.5
    probs[2, 3] = 0.3
    keep, labels = assign_proposals(iou, torch.tensor([3, 17]), probs, 0.1, 0.1)
    assert keep.tolist() == [True, False, True, False]
    assert labels[keep].tolist() == [17, 3]


def test_cascade_rpn_proposes_under_the_settings_the_report_prints():
    from mmdet.registry import MODELS
    init_default_scope('mmdet')
    cfg = zoo_config('mmdet::cascade_rpn/cascade-rpn_faster-rcnn_r50-caffe_fpn_1x_coco.py').model
    cfg.backbone.pop('init_cfg', None)
    cfg.backbone.depth = 18
    cfg.neck.in_channels = [64, 128, 256, 512]
    torch.manual_seed(0)
    model = revert_sync_batchnorm(MODELS.build(cfg)).eval()
    batch = make_batch(num=1)
    images = [x.float() for x in batch['inputs']]
    stock = model.rpn_head.stages[-1].test_cfg
    # IoU 0 keeps every proposal of an image: at most rpn_max_per_img of them
    with attack_mode(model):
        t = TwoStageTargets(model, images, batch['data_samples'], rpn_max_per_img=7,
                            iou_thr=0.0, score_thr=0.0)
    assert 0 < len(t.boxes[0]) <= 7 and t.settings['rpn_max_per_img'] == 7
    assert model.rpn_head.stages[-1].test_cfg is stock
