"""An image's targets, logits and predictions do not depend on its batch companions.

Batches mix image sizes (VOC has portrait and landscape pictures) and DAG
forwards only the images still being attacked: every forward of an image is
made at the image's own padded canvas (mmdag.targets.batching).
"""
import pytest
import torch
from mmengine.structures import InstanceData

from mmdag.apis import attack_batch
from mmdag.engine.step import attack_mode
from mmdag.targets import build_targets
from mmdag.targets.batching import canvas_groups, canvas_of, grouped_test_step
from test_one_stage import build as build_one_stage
from test_two_stage import TARGETS as TWO_STAGE_TARGETS
from test_two_stage import build as build_two_stage
from test_two_stage import make_batch as two_stage_batch

# the shapes of the reproduction: landscape and portrait
SHAPES = [(256, 384), (384, 256)]


def mixed_batch(shapes, seed=0, boxes_per_image=2):
    """Images of the given (h, w); ground truth in the original frame (half size)."""
    from mmdet.structures import DetDataSample
    g = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for k, (h, w) in enumerate(shapes):
        inputs.append((torch.rand(3, h, w, generator=g) * 255).round().to(torch.uint8))
        s = DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h // 2, w // 2),
                                        scale_factor=(2.0, 2.0), img_path=f'mixed_{k}.jpg'))
        oh, ow = h / 2, w / 2
        boxes = torch.tensor([[0.05 * ow, 0.05 * oh, 0.45 * ow, 0.5 * oh],
                              [0.4 * ow, 0.3 * oh, 0.95 * ow, 0.9 * oh]])[:boxes_per_image]
        s.gt_instances = InstanceData(bboxes=boxes, labels=torch.tensor([3, 17])[:boxes_per_image])
        samples.append(s)
    return dict(inputs=inputs, data_samples=samples)


MODELS = {
    'faster_fpn': lambda: build_two_stage('faster_fpn'),
    'retinanet': lambda: build_one_stage('retinanet'),
    'fcos': lambda: build_one_stage('fcos'),
    'atss': lambda: build_one_stage('atss'),
}
# random weights: keep every overlapping proposal / every matched prior active
TARGET_CFG = {'faster_fpn': TWO_STAGE_TARGETS, 'retinanet': dict(score_thr=1e-6),
              'fcos': dict(score_thr=1e-6), 'atss': dict(score_thr=1e-6)}


@pytest.mark.parametrize('name', sorted(MODELS))
def test_target_logits_do_not_depend_on_batch_companions(name):
    model = MODELS[name]()
    batch = mixed_batch(SHAPES)
    images = [x.float() for x in batch['inputs']]
    assert len(canvas_groups(model, images)) == 2
    with attack_mode(model), torch.no_grad():
        both = build_targets(model, images, batch['data_samples'], **TARGET_CFG[name])
        assert all(len(lab) > 0 for lab in both.labels)
        together = both.logits(images, [0, 1])
        # image 1 alone, with the targets built on the batch (the sub-batch
        # DAG forwards once image 0 stopped): before the fix an IndexError
        # for one-stage heads, shifted border features for two-stage ones
        alone = both.logits([images[1]], [1])[0]
        # targets built on image 1 alone (a run with batch size 1)
        single = build_targets(model, [images[1]], [batch['data_samples'][1]],
                               **TARGET_CFG[name])
        single_logits = single.logits([images[1]], [0])[0]
    assert torch.allclose(alone, together[1], atol=1e-4, rtol=1e-4)
    assert torch.equal(single.labels[0], both.labels[1])
    assert torch.allclose(single_logits, together[1], atol=1e-4, rtol=1e-4)


def test_canvas_is_what_a_batch_of_one_gets():
    model = build_one_stage('retinanet')   # DetDataPreprocessor, pad_size_divisor 32
    assert model.data_preprocessor.pad_size_divisor == 32
    assert canvas_of(model, (3, 250, 380)) == (256, 384)
    # different sizes with one canvas are forwarded together
    images = [torch.zeros(3, 250, 380), torch.zeros(3, 384, 256), torch.zeros(3, 256, 384)]
    assert canvas_groups(model, images) == [[0, 2], [1]]


def test_grouped_test_step_equals_batch_size_one():
    model = build_two_stage('faster_fpn')
    batch = mixed_batch(SHAPES + [(256, 384)], seed=1)
    with torch.no_grad():
        grouped = grouped_test_step(
            model, dict(inputs=batch['inputs'],
                        data_samples=[s.clone() for s in batch['data_samples']]))
        for k in range(3):
            one = model.test_step(dict(inputs=[batch['inputs'][k]],
                                       data_samples=[batch['data_samples'][k].clone()]))[0]
            a, b = grouped[k].pred_instances, one.pred_instances
            assert grouped[k].img_path == batch['data_samples'][k].img_path
            assert torch.allclose(a.bboxes, b.bboxes, atol=1e-3)
            assert torch.allclose(a.scores, b.scores, atol=1e-5)
            assert torch.equal(a.labels, b.labels)


def test_batch_with_an_early_stop_equals_three_runs_of_batch_size_one():
    """Three mixed-size images, one of which stops early: the same adversarial
    images, statistics and predictions as three runs with batch size 1."""
    model = build_one_stage('retinanet')
    # image 2 has one small box (few targets): it converges first
    batch = mixed_batch(SHAPES, seed=2)
    small = mixed_batch([(256, 384)], seed=5, boxes_per_image=1)
    for key in ('inputs', 'data_samples'):
        batch[key] = batch[key] + small[key]
    small['data_samples'][0].set_metainfo(dict(img_path='mixed_2.jpg'))
    # random weights score every class near the 0.01 prior: at that threshold
    # about 60% of the matched priors start "still correct" (only those are
    # attacked and counted), and large steps flip 70% of them within 3 to 5
    # iterations
    attack = dict(gamma=48.0, max_iters=6, stop_fraction=0.3, seed=1)
    tcfg = dict(score_thr=0.01)
    res, _ = attack_batch(model, batch, attack, tcfg)
    status = [s['status'] for s in res.stats]
    iters = [s['iters'] for s in res.stats]
    # the test exercises a sub-batch only if one image stops before another
    assert 'converged' in status and min(iters) < max(iters), (status, iters)
    singles = []
    for k in range(3):
        one = dict(inputs=[batch['inputs'][k]], data_samples=[batch['data_samples'][k]])
        r1, _ = attack_batch(model, one, attack, tcfg)
        singles.append(r1.adv_images[0])
        assert r1.stats[0]['status'] == res.stats[k]['status']
        assert r1.stats[0]['iters'] == res.stats[k]['iters']
        assert r1.stats[0]['correct_frac'] == pytest.approx(res.stats[k]['correct_frac'], abs=1e-6)
        assert r1.stats[0]['linf'] == pytest.approx(res.stats[k]['linf'], abs=1e-3)
        assert torch.allclose(r1.adv_images[0], res.adv_images[k], atol=1e-3)
    with torch.no_grad():
        preds = grouped_test_step(
            model, dict(inputs=res.adv_images,
                        data_samples=[s.clone() for s in batch['data_samples']]))
        for k in range(3):
            one = model.test_step(dict(inputs=[singles[k]],
                                       data_samples=[batch['data_samples'][k].clone()]))[0]
            assert torch.allclose(preds[k].pred_instances.scores, one.pred_instances.scores,
                                  atol=1e-5)


def test_segmentation_batch_may_mix_sizes():
    """mmseg's test preprocessor refuses a batch of mixed sizes; mmdag forwards
    one size at a time, so such a batch is attacked and predicted, and each
    image gets what a batch of one gives."""
    from test_segmentation import TINY
    from test_segmentation import build as build_seg
    from test_segmentation import make_batch as seg_batch
    model = build_seg(TINY)
    a, b = seg_batch(num=1, h=40, w=56, seed=1), seg_batch(num=1, h=56, w=40, seed=2)
    batch = dict(inputs=a['inputs'] + b['inputs'],
                 data_samples=a['data_samples'] + b['data_samples'])
    with pytest.raises(AssertionError, match='same'):   # the stock path
        model.test_step(dict(inputs=batch['inputs'],
                             data_samples=[s.clone() for s in batch['data_samples']]))
    images = [x.float() for x in batch['inputs']]
    with attack_mode(model), torch.no_grad():
        t = build_targets(model, images, batch['data_samples'])
        together = t.logits(images, [0, 1])
        alone = t.logits([images[1]], [1])[0]
    assert torch.allclose(alone, together[1], atol=1e-5)
    res, _ = attack_batch(model, batch, dict(max_iters=2))
    assert [tuple(x.shape) for x in res.adv_images] == [(3, 40, 56), (3, 56, 40)]
    # values, not only shapes: each image's attack and prediction are those
    # of a batch of one
    for k, one in enumerate((a, b)):
        alone, _ = attack_batch(model, one, dict(max_iters=2))
        assert alone.stats[0]['iters'] == res.stats[k]['iters'] == 2
        assert torch.allclose(alone.perturbations[0], res.perturbations[k], atol=1e-4)
    # an epsilon sweep (the Python API's attack too): each epsilon as a batch of one
    from mmdag.attacks import build_sweep
    pgd = dict(type='PGD', max_iters=2, alpha=1.0)
    res, _ = attack_batch(model, batch, build_sweep(pgd, [1, 3]))
    for k, one in enumerate((a, b)):
        for e in (1.0, 3.0):
            alone, _ = attack_batch(model, one, dict(pgd, epsilon=e))
            assert torch.allclose(alone.perturbations[0], res.sweep[e].perturbations[k],
                                  atol=1e-4)
    with torch.no_grad():
        preds = grouped_test_step(
            model, dict(inputs=batch['inputs'],
                        data_samples=[s.clone() for s in batch['data_samples']]))
        singles = [model.test_step(dict(inputs=one['inputs'],
                                        data_samples=[s.clone() for s in one['data_samples']]))[0]
                   for one in (a, b)]
    assert [tuple(p.pred_sem_seg.data.shape[-2:]) for p in preds] == [(40, 56), (56, 40)]
    for p, q in zip(preds, singles):
        assert torch.equal(p.pred_sem_seg.data, q.pred_sem_seg.data)
        assert torch.allclose(p.seg_logits.data, q.seg_logits.data, atol=1e-5)


@pytest.mark.parametrize('name,attack', [
    ('faster_fpn', dict(type='DetPGD', max_iters=2, seed=3)),
    ('retinanet', dict(type='DetPGD', max_iters=2, terms='cls')),
    ('faster_fpn', dict(type='TOGVanishing', max_iters=2)),
    ('retinanet', dict(type='TOGMislabel', max_iters=2, adv_labels='random')),
], ids=lambda v: v if isinstance(v, str) else v['type'])
def test_the_detection_attacks_on_a_mixed_batch_equal_batch_size_one(name, attack):
    """DetPGD (the detector's loss, its samplers seeded per image and step)
    and TOG on a landscape and a portrait image: the adversarial images and
    statistics of two runs with batch size 1."""
    model = MODELS[name]()
    batch = mixed_batch(SHAPES, seed=4)
    if name == 'faster_fpn':
        # random weights: the box head's argmax is mostly the background;
        # on these two images some proposals start correct
        batch, big = two_stage_batch(num=1), two_stage_batch(num=1, h=128, w=160, seed=3)
        batch['inputs'] += big['inputs']
        batch['data_samples'] += big['data_samples']
        batch['data_samples'][1].set_metainfo(dict(img_path='det_big.jpg'))
    res, _ = attack_batch(model, batch, attack, TARGET_CFG[name])
    assert all(s['backwards'] == 2 for s in res.stats), res.stats
    for k in range(2):
        one = dict(inputs=[batch['inputs'][k]], data_samples=[batch['data_samples'][k]])
        r1, _ = attack_batch(model, one, attack, TARGET_CFG[name])
        assert r1.stats[0]['correct_frac'] == pytest.approx(res.stats[k]['correct_frac'],
                                                            abs=1e-6)
        assert torch.allclose(r1.adv_images[0], res.adv_images[k], atol=1e-3)
