"""The segmentation adapter on zoo configs built with random weights."""
import copy

import pytest
import torch
from mmengine.config import Config
from mmengine.model.utils import revert_sync_batchnorm
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData

from mmdag.apis import attack_batch
from mmdag.attacks import DAG
from mmdag.targets import SegmentationTargets, UnsupportedModelError, build_targets
from conftest import eq1_loss, zoo_config

ZOO = {
    'fcn': 'mmseg::fcn/fcn_r50-d8_4xb4-20k_voc12aug-512x512.py',
    'deeplabv3': 'mmseg::deeplabv3/deeplabv3_r50-d8_4xb4-20k_voc12aug-512x512.py',
    'pspnet': 'mmseg::pspnet/pspnet_r50-d8_4xb4-20k_voc12aug-512x512.py',
}
TINY = 'configs/demo/fcn_tiny_synthetic-voc.py'


def build(cfg_path, slim=True, **test_cfg):
    from mmseg.registry import MODELS
    init_default_scope('mmseg')
    cfg = (zoo_config(cfg_path) if '::' in cfg_path else Config.fromfile(cfg_path)).model
    cfg.pretrained = None
    if slim and '::' in cfg_path:
        cfg.backbone.depth = 18   # same zoo head and decode path, smaller backbone
        cfg.decode_head.in_channels = 512
        cfg.decode_head.channels = 32
        if 'auxiliary_head' in cfg:
            cfg.auxiliary_head.in_channels = 256
            cfg.auxiliary_head.channels = 16
    cfg.test_cfg.update(test_cfg)
    torch.manual_seed(0)
    model = revert_sync_batchnorm(MODELS.build(cfg)).eval()
    return model


def make_batch(num=2, h=40, w=56, seed=0, gt=True, ignore_frac=0.2):
    from mmseg.structures import SegDataSample
    g = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for k in range(num):
        inputs.append((torch.rand(3, h, w, generator=g) * 255).round().to(torch.uint8))
        s = SegDataSample(metainfo=dict(ori_shape=(h, w), img_shape=(h, w), pad_shape=(h, w),
                                        img_path=f'img_{seed}_{k}.jpg'))
        if gt:
            lab = torch.randint(0, 21, (1, h, w), generator=g)
            lab[torch.rand(1, h, w, generator=g) < ignore_frac] = 255
            s.gt_sem_seg = PixelData(data=lab)
        samples.append(s)
    return dict(inputs=inputs, data_samples=samples)


@pytest.mark.parametrize('name', sorted(ZOO))
def test_zoo_segmentors_attack_reduces_eq1(name):
    model = build(ZOO[name])
    batch = make_batch()
    res, targets = attack_batch(model, batch, dict(max_iters=3, gamma=0.5))
    before = eq1_loss(targets, batch['inputs'], res.adv_labels)
    after = eq1_loss(targets, res.adv_images, res.adv_labels)
    assert after < before
    assert all(s['iters'] == 3 or s['converged'] for s in res.stats)
    assert all(0 < s['linf'] <= 1.5 + 1e-4 for s in res.stats)


@pytest.mark.parametrize('mode', ['whole', 'slide'])
def test_logits_are_the_models_own_prediction(mode):
    extra = dict(mode='slide', crop_size=(32, 32), stride=(24, 24)) if mode == 'slide' else {}
    model = build(TINY, **extra)
    batch = make_batch(num=2, h=40, w=56)
    targets = SegmentationTargets(model, [x.float() for x in batch['inputs']],
                                  batch['data_samples'])
    with torch.no_grad():
        mine = targets.logits([x.float() for x in batch['inputs']], [0, 1])
        outs = model.test_step(copy.deepcopy(batch))
    for z, out, idx in zip(mine, outs, targets.index):
        ref = out.seg_logits.data.flatten(1)[:, idx].T
        assert torch.allclose(z, ref, atol=1e-4)


def test_targets_skip_ignore_index_and_fall_back_to_clean_prediction():
    model = build(TINY)
    batch = make_batch(num=1, h=24, w=24, ignore_frac=0.3)
    t = SegmentationTargets(model, [x.float() for x in batch['inputs']], batch['data_samples'])
    gt = batch['data_samples'][0].gt_sem_seg.data.flatten()
    assert t.labels[0].numel() == int((gt != 255).sum())
    assert (t.labels[0] != 255).all()
    nogt = make_batch(num=1, h=24, w=24, gt=False)
    t = SegmentationTargets(model, [x.float() for x in nogt['inputs']], nogt['data_samples'])
    with torch.no_grad():
        pred = model.test_step(copy.deepcopy(nogt))[0].pred_sem_seg.data.flatten()
    assert t.labels[0].numel() == 24 * 24
    assert torch.equal(t.labels[0], pred)


def test_image_without_targets_passes_unchanged():
    model = build(TINY)
    batch = make_batch(num=2, h=24, w=24)
    batch['data_samples'][1].gt_sem_seg.data[:] = 255    # all void
    res, _ = attack_batch(model, batch, DAG(max_iters=2))
    assert res.stats[1]['status'] == 'no_targets'
    assert torch.equal(res.adv_images[1], batch['inputs'][1].float())
    assert res.stats[0]['iters'] > 0


def test_cascade_encoder_decoder():
    from mmseg.registry import MODELS
    init_default_scope('mmseg')
    cfg = Config.fromfile(TINY).model
    norm = dict(type='BN', requires_grad=True)
    cfg.type = 'CascadeEncoderDecoder'
    cfg.num_stages = 2
    cfg.decode_head = [
        dict(type='FCNHead', in_channels=128, in_index=3, channels=32, num_convs=1,
             concat_input=False, num_classes=21, norm_cfg=norm, align_corners=False),
        dict(type='OCRHead', in_channels=128, in_index=3, channels=32, ocr_channels=16,
             num_classes=21, norm_cfg=norm, align_corners=False),
    ]
    model = MODELS.build(cfg).eval()
    batch = make_batch(num=1, h=32, w=32)
    res, targets = attack_batch(model, batch, dict(max_iters=2))
    assert targets.num_classes == 21 and res.stats[0]['iters'] >= 1


def test_unsupported_model_gets_one_clear_error():
    with pytest.raises(UnsupportedModelError, match='Supported families: MMSegmentation'):
        build_targets(torch.nn.Linear(2, 2), [], [])


def test_empty_image_gets_a_clear_error():
    from mmdag.errors import MMDagError
    model = build(TINY)
    batch = make_batch(num=1, h=24, w=24)
    batch['inputs'] = [torch.zeros(3, 0, 24, dtype=torch.uint8)]
    with pytest.raises(MMDagError, match='empty'):
        attack_batch(model, batch)
    with pytest.raises(MMDagError, match='empty data batch'):
        attack_batch(model, dict(inputs=[], data_samples=[]))
