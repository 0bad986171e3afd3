"""The one-stage detection adapter on mmdet zoo configs built with random weights."""
import pytest
import torch
from mmengine.model.utils import revert_sync_batchnorm
from mmengine.registry import init_default_scope
from mmengine.structures import InstanceData

from mmdag.attacks import DAG
from mmdag.engine.step import attack_mode
from mmdag.targets import OneStageTargets, find_adapter
from conftest import eq1_loss, zoo_config

# name: (zoo config, input size (h, w)); SSD300 keeps its fixed 300x300 input
ZOO = {
    'retinanet': ('mmdet::retinanet/retinanet_r18_fpn_1x_coco.py', (96, 128)),
    'fcos': ('mmdet::fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py', (96, 128)),
    'atss': ('mmdet::atss/atss_r50_fpn_1x_coco.py', (96, 128)),
    'ssd300': ('mmdet::ssd/ssd300_coco.py', (300, 300)),
    'yolov3': ('mmdet::yolo/yolov3_mobilenetv2_8xb24-320-300e_coco.py', (96, 128)),
}
HEADS = {'retinanet': 'RetinaHead', 'fcos': 'FCOSHead', 'atss': 'ATSSHead',
         'ssd300': 'SSDHead', 'yolov3': 'YOLOV3Head'}


def build(name):
    from mmdet.registry import MODELS
    init_default_scope('mmdet')
    cfg = zoo_config(ZOO[name][0]).model
    cfg.backbone.pop('init_cfg', None)
    if cfg.backbone.type == 'ResNet' and cfg.backbone.depth == 50:   # slimmer, same head
        cfg.backbone.depth = 18
        cfg.neck.in_channels = [64, 128, 256, 512][-len(cfg.neck.in_channels):]
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    model.init_weights()   # SSD's L2Norm scale is uninitialised memory until then
    return revert_sync_batchnorm(model).eval()


def make_batch(h, w, num=2, seed=0):
    """Two objects per image; boxes in the original frame (half the input)."""
    from mmdet.structures import DetDataSample
    g = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for k in range(num):
        inputs.append((torch.rand(3, h, w, generator=g) * 255).round().to(torch.uint8))
        s = DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h // 2, w // 2),
                                        scale_factor=(2.0, 2.0), img_path=f'det_{k}.jpg'))
        oh, ow = h / 2, w / 2
        s.gt_instances = InstanceData(
            bboxes=torch.tensor([[0.05 * ow, 0.05 * oh, 0.45 * ow, 0.5 * oh],
                                 [0.4 * ow, 0.3 * oh, 0.95 * ow, 0.9 * oh]]),
            labels=torch.tensor([3, 17]))
        samples.append(s)
    return dict(inputs=inputs, data_samples=samples)


@pytest.mark.parametrize('name', sorted(ZOO))
def test_one_stage_zoo_detectors_attack_reduces_eq1(name):
    model = build(name)
    assert find_adapter(model) is OneStageTargets
    assert type(model.bbox_head).__name__ == HEADS[name]
    batch = make_batch(*ZOO[name][1])
    images = [x.float() for x in batch['inputs']]
    with attack_mode(model):
        # random weights score every class near the prior: a threshold of
        # ~0 keeps every matched prior active (sigmoid heads)
        t = OneStageTargets(model, images, batch['data_samples'], score_thr=1e-6)
        assert all(len(lab) > 0 for lab in t.labels)
        assert all(set(lab.tolist()) <= {3, 17} for lab in t.labels)
        assert all(len(set(lab.tolist())) == 2 for lab in t.labels)   # both objects matched
        if not t.sigmoid:   # softmax (SSD): start with every target active
            with torch.no_grad():
                t.labels = [z.argmax(1) for z in t.logits(images, [0, 1])]
        res = DAG(max_iters=2, gamma=1.0)(images, t)
    assert all(s["iters"] == 2 for s in res.stats), [s["status"] for s in res.stats]
    before = eq1_loss(t, batch['inputs'], res.adv_labels)
    assert eq1_loss(t, res.adv_images, res.adv_labels) < before
    if not t.sigmoid:
        assert t.num_classes == 81 and all((a != 80).all() for a in res.adv_labels)
        assert t.activation == 'softmax'
    else:
        assert t.num_classes == 80
        assert t.activation == 'sigmoid'   # the budgeted attacks' loss is then the BCE


def test_sigmoid_rule_is_the_heads_test_score_threshold():
    model = build('retinanet')
    batch = make_batch(96, 128, num=1)
    images = [x.float() for x in batch['inputs']]
    t = OneStageTargets(model, images, batch['data_samples'])
    assert t.settings['score_thr'] == model.bbox_head.test_cfg.score_thr == 0.05
    z = torch.tensor([[-3.0, 0.0], [-2.0, -5.0]])   # sigmoid(-3)=0.047, sigmoid(-2)=0.12
    assert t.correct(z, torch.tensor([0, 0])).tolist() == [False, True]
    # with random weights (prior probability 0.01) nothing is detected: no target
    # starts correct, so DAG has nothing to do
    with attack_mode(model):
        res = DAG(max_iters=3)(images, t)
    assert res.stats[0]['iters'] == 0


def test_images_without_boxes_have_no_targets():
    model = build('fcos')
    batch = make_batch(96, 128, num=2)
    batch['data_samples'][1].gt_instances = InstanceData(bboxes=torch.zeros(0, 4),
                                                         labels=torch.zeros(0, dtype=torch.long))
    t = OneStageTargets(model, [x.float() for x in batch['inputs']], batch['data_samples'],
                        score_thr=1e-6)
    assert len(t.labels[0]) > 0 and len(t.labels[1]) == 0


def test_model_without_train_cfg_gets_one_clear_error():
    from mmdet.registry import MODELS

    from mmdag.errors import UnsupportedModelError
    init_default_scope('mmdet')
    cfg = zoo_config(ZOO['retinanet'][0]).model
    cfg.backbone.pop('init_cfg', None)
    cfg.pop('train_cfg')
    model = MODELS.build(cfg).eval()
    batch = make_batch(96, 128, num=1)
    with pytest.raises(UnsupportedModelError, match='train_cfg'):
        OneStageTargets(model, [x.float() for x in batch['inputs']], batch['data_samples'])


def test_a_pipeline_pad_is_neither_perturbed_nor_counted():
    """RTMDet and YOLOX pad to 640x640 in the test pipeline (``Pad`` sets
    ``pad_shape`` and overwrites ``img_shape``): the attack, PERM and the
    statistics cover the image's own region, original size x scale factor."""
    from mmdag.apis import attack_batch, perm_images
    from mmdag.attacks import perturbation_stats
    from mmdag.engine.step import content_region
    model = build('retinanet')
    batch = make_batch(96, 128, num=1)
    s = batch['data_samples'][0]
    # the image is 72x128 (ori 36x64, scale 2) padded to 96x128 with grey 114
    s.set_metainfo(dict(ori_shape=(36, 64), img_shape=(96, 128), pad_shape=(96, 128, 3)))
    batch['inputs'][0][:, 72:] = 114
    s.gt_instances.bboxes = torch.tensor([[3.0, 2.0, 30.0, 30.0], [30.0, 5.0, 60.0, 34.0]])
    assert content_region(s, batch['inputs'][0]) == (72, 128)
    res, targets = attack_batch(model, batch, dict(max_iters=3, gamma=1.0), dict(score_thr=1e-6))
    st, r = res.stats[0], res.perturbations[0]
    assert st['iters'] == 3 and r[:, :72].abs().max() > 0
    assert r[:, 72:].abs().max() == 0
    assert st['p'] == pytest.approx(perturbation_stats(r[:, :72])['p'])
    perm = perm_images(batch['inputs'], res.perturbations, batch['data_samples'])[0]
    assert torch.equal(perm[:, 72:], batch['inputs'][0][:, 72:].float())
