"""Per-head target code (mmdag.targets.dense_heads) on zoo configs, random weights.

What is checked for every supported dense head: the head's own target code
runs through mmdag, every target carries the ground-truth box's class, and
every target prior lies where that head puts its positives: at or near the
box (its centre within the box grown by one stride of its level; corner
heads: at the box corners). The last check fails if the flat prior order of
the logits and of the assigned labels disagree (a wrong level, row, column or
base-prior order puts the targets elsewhere).
"""
import pytest
import torch
from mmengine.model.utils import revert_sync_batchnorm
from mmengine.registry import init_default_scope
from mmengine.structures import InstanceData

from mmdag.engine.step import attack_mode
from mmdag.targets import OneStageTargets, build_targets
from mmdag.targets.common import features as _features
from mmdag.targets.dense_heads import cls_maps
from conftest import zoo_config

# 24 zoo models built and assigned (about 4 min on 2 cores): run in CI, not by default
pytestmark = pytest.mark.slow
H = W = 256
BOX = [64., 48., 192., 208.]
LABEL = 1

CONFIGS = {
    'RetinaHead': 'retinanet/retinanet_r18_fpn_1x_coco.py',
    'ATSSHead': 'atss/atss_r50_fpn_1x_coco.py',
    'GFLHead': 'gfl/gfl_r50_fpn_1x_coco.py',
    'PAAHead': 'paa/paa_r50_fpn_1x_coco.py',
    'TOODHead': 'tood/tood_r50_fpn_1x_coco.py',
    'RTMDetSepBNHead': 'rtmdet/rtmdet_tiny_8xb32-300e_coco.py',
    'RTMDetInsSepBNHead': 'rtmdet/rtmdet-ins_tiny_8xb32-300e_coco.py',
    'YOLOFHead': 'yolof/yolof_r50-c5_8xb8-1x_coco.py',
    'SABLRetinaHead': 'sabl/sabl-retinanet_r50_fpn_1x_coco.py',
    'FCOSHead': 'fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py',
    'VFNetHead': 'vfnet/vfnet_r50_fpn_1x_coco.py',
    'AutoAssignHead': 'autoassign/autoassign_r50-caffe_fpn_1x_coco.py',
    'FoveaHead': 'foveabox/fovea_r50_fpn_4xb4-1x_coco.py',
    'YOLOXHead': 'yolox/yolox_tiny_8xb8-300e_coco.py',
    'RepPointsHead': 'reppoints/reppoints-moment_r50_fpn_1x_coco.py',
    'CenterNetHead': 'centernet/centernet_r18_8xb16-crop512-140e_coco.py',
    'CenterNetUpdateHead': 'centernet/centernet-update_r18_fpn_8xb8-amp-lsj-200e_coco.py',
    'SOLOHead': 'solo/solo_r18_fpn_8xb8-lsj-200e_coco.py',
    'DecoupledSOLOHead': 'solo/decoupled-solo_r50_fpn_1x_coco.py',
    'SOLOV2Head': 'solov2/solov2-light_r18_fpn_ms-3x_coco.py',
    'CondInstBboxHead': 'condinst/condinst_r50_fpn_ms-poly-90k_coco_instance.py',
    'YOLACTHead': 'yolact/yolact_r50_1xb8-55e_coco.py',
    'YOLOV3Head': 'yolo/yolov3_mobilenetv2_8xb24-320-300e_coco.py',
    'SSDHead': 'ssd/ssd300_coco.py',
}


def _strip_pretrained(cfg):
    from mmengine.config import ConfigDict
    if isinstance(cfg, dict):
        return ConfigDict({k: _strip_pretrained(v) for k, v in cfg.items()
                           if k != 'pretrained' and not (k == 'init_cfg' and isinstance(v, dict)
                                                         and v.get('type') == 'Pretrained')})
    if isinstance(cfg, list):
        return [_strip_pretrained(v) for v in cfg]
    return cfg


def build(rel):
    from mmdet.registry import MODELS
    init_default_scope('mmdet')
    torch.manual_seed(0)
    cfg = _strip_pretrained(zoo_config(f'mmdet::{rel}').model)
    return revert_sync_batchnorm(MODELS.build(cfg)).eval()


SIZE = {'SSDHead': 320}    # SSD300's last levels need at least 300 pixels


def one_box_batch(H=H, W=W):
    from mmdet.structures import DetDataSample
    g = torch.Generator().manual_seed(0)
    img = (torch.rand(3, H, W, generator=g) * 255).round().to(torch.uint8)
    s = DetDataSample(metainfo=dict(img_shape=(H, W), ori_shape=(H, W), scale_factor=(1.0, 1.0),
                                    img_path='one_box.jpg', border=(0, H, 0, W)))
    s.gt_instances = InstanceData(bboxes=torch.tensor([BOX]), labels=torch.tensor([LABEL]))
    return dict(inputs=[img], data_samples=[s])


def prior_positions(targets, image):
    """(x, y, stride) of every flat prior, from the class maps' geometry."""
    x, metas = _features(targets.model, [image], targets.samples[:1])
    maps = cls_maps(targets.spec, targets.head, x)
    ih, iw = metas[0]['batch_input_shape']
    out = []
    for m in maps:
        a = m.shape[1] // targets.num_logits
        h, w = m.shape[-2:]
        ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing='ij')
        sx, sy = iw / w, ih / h
        pos = torch.stack([(xs + 0.5) * sx, (ys + 0.5) * sy,
                           torch.full_like(xs, 1.0) * max(sx, sy)], -1)
        out.append(pos.reshape(-1, 1, 3).expand(-1, a, 3).reshape(-1, 3))
    return torch.cat(out)


@pytest.mark.parametrize('head', sorted(CONFIGS))
def test_targets_sit_on_the_box(head):
    model = build(CONFIGS[head])
    batch = one_box_batch(SIZE.get(head, H), SIZE.get(head, W))
    image = batch['inputs'][0].float()
    with attack_mode(model):
        targets = build_targets(model, [image], batch['data_samples'], score_thr=1e-6)
        assert isinstance(targets, OneStageTargets)
        assert type(targets.head).__name__ == head
        labels = targets.labels[0]
        assert len(labels) > 0, 'no prior assigned to the box'
        assert (labels == LABEL).all()
        with torch.no_grad():
            pos = prior_positions(targets, image)[targets.index[0]]
            logits = targets.logits([image], [0])[0]
    assert logits.shape == (len(labels), targets.num_logits)
    x1, y1, x2, y2 = BOX
    # PAA's candidates are every anchor with IoU >= 0.1 (its GMM re-assignment,
    # which needs training losses, is not run): allow three strides
    tol = pos[:, 2] * (3 if head == 'PAAHead' else 1)
    inside = ((pos[:, 0] >= x1 - tol) & (pos[:, 0] <= x2 + tol)
              & (pos[:, 1] >= y1 - tol) & (pos[:, 1] <= y2 + tol))
    assert inside.all(), \
        f'{int((~inside).sum())} of {len(pos)} targets away from the box: {pos[~inside][:5]}'


@pytest.mark.parametrize('head', ['SOLOHead', 'DecoupledSOLOHead', 'SOLOV2Head'])
def test_solo_targets_are_logits_of_the_scores_predict_reads(head):
    """In eval mode SOLO's and DecoupledSOLO's forward return probabilities
    (``sigmoid(cls)`` times the local-maximum mask); DAG must attack the
    logits, and "correct" must be the score ``predict`` thresholds."""
    import torch.nn.functional as F

    from mmdag.targets.dense_heads import flat_logits
    model = build(CONFIGS[head])
    batch = one_box_batch()
    image = batch['inputs'][0].float()
    with attack_mode(model):
        targets = build_targets(model, [image], batch['data_samples'], score_thr=0.005)
        with torch.no_grad():
            z = targets.logits([image], [0])[0]
            x, _ = _features(model, [image], targets.samples[:1])
            outs = targets.head(x)           # the stock eval-mode forward
    cls = {'SOLOHead': 1, 'DecoupledSOLOHead': 2}.get(head)
    cls = outs[cls] if cls else None
    if cls is None:                          # SOLOv2: predict_by_feat's own steps
        cls = []
        for c in outs[1]:
            c = c.sigmoid()
            cls.append(c * (F.max_pool2d(c, 2, stride=1, padding=1)[:, :, :-1, :-1] == c))
    stock = flat_logits(cls, 0, targets.num_logits)[targets.index[0]]
    assert len(z) > 0
    assert (z < 0).any() and not ((z >= 0) & (z <= 1)).all()     # logits, not probabilities
    torch.testing.assert_close(z.sigmoid(), stock, atol=1e-6, rtol=1e-5)
    labels = targets.labels[0]
    assert torch.equal(targets.correct(z, labels), stock.gather(1, labels[:, None])[:, 0] > 0.005)
