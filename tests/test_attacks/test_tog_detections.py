"""TOG's untargeted and mislabel attacks (mmdag.attacks.tog_detections)
against the authors' code transcribed in reference_tog_detections.py, on a
two-stage (Faster R-CNN) and a one-stage (RetinaNet) mmdet toy.

The toys have random weights, made confident so that they detect something
at TOG's thresholds: the classifier's weights are scaled up (a random-weight
Faster R-CNN scores every class about 1/81, a RetinaNet every class at its
prior 0.01, so neither detects anything above 0.7 or 0.2). Each oracle check
comes with a mutation that must fail: the annotations instead of the clean
detections, the opposite sign, another threshold, the other mode.
"""
from functools import lru_cache

import numpy as np
import pytest
import torch
from mmengine.structures import InstanceData

from mmdag.attacks.base import derive_seeds
from mmdag.attacks.budgeted import uniform_start
from mmdag.attacks.tog_detections import TOGMislabel, TOGUntargeted, tog_ll_labels, tog_ml_labels
from mmdag.engine.step import attack_mode
from mmdag.errors import MMDagError
from mmdag.targets import OneStageTargets, TwoStageTargets
from mmdag.targets.det_loss import TOG_SCORE_THR, loss_mode, tog_model_kind
from reference_tog_detections import (generate_attack_targets, mislabeling_loss, tog_loop,
                                      untargeted_loss)
from test_model_state import check_unchanged, snapshot
from test_one_stage import build as build_one_stage
from test_one_stage import make_batch as one_stage_batch
from test_two_stage import TARGETS
from test_two_stage import build as build_two_stage
from test_two_stage import make_batch as two_stage_batch

H, W = 96, 128


def correct_on_clean(t, images):
    """The clean prediction as the targets' labels, so that the statistics
    count targets (a random toy rarely scores the annotated class first).
    TOG's loss does not read them."""
    with torch.no_grad():
        t.labels = [z.argmax(1) for z in t.logits(images, list(range(len(images))))]


@lru_cache(maxsize=None)
def two_stage():
    """Faster R-CNN (r18 FPN, 80 classes) whose RoI classifier is confident."""
    model = build_two_stage('faster_fpn')
    with torch.no_grad():
        model.roi_head.bbox_head.fc_cls.weight.mul_(25)
    batch = two_stage_batch(num=2, h=H, w=W)
    images = [x.float() for x in batch['inputs']]
    with attack_mode(model):
        t = TwoStageTargets(model, images, batch['data_samples'], **TARGETS)
        correct_on_clean(t, images)
    return model, images, batch, t


@lru_cache(maxsize=None)
def one_stage():
    """RetinaNet (r18 FPN) whose classifier is confident."""
    model = build_one_stage('retinanet')
    with torch.no_grad():
        conv = model.bbox_head.retina_cls
        conv.weight.mul_(60)
        conv.bias.fill_(-2.0)
    batch = one_stage_batch(H, W, num=2)
    images = [x.float() for x in batch['inputs']]
    with attack_mode(model):
        t = OneStageTargets(model, images, batch['data_samples'])
        correct_on_clean(t, images)
    return model, images, batch, t


BUILDERS = {'faster_rcnn': two_stage, 'retinanet': one_stage}


@pytest.fixture(scope='module', params=sorted(BUILDERS))
def toy(request):
    return BUILDERS[request.param]()


# ------------------------------------------------------------ the oracle side
def predicted(model, image, sample):
    """The model's own detections of an image, in the input frame."""
    s = sample.clone()
    with torch.no_grad():
        data = model.data_preprocessor(dict(inputs=[image], data_samples=[s]), False)
        return model.predict(data['inputs'], data['data_samples'], rescale=False)[0].pred_instances


def pseudo_gt(model, image, sample, thr):
    """TOG's ground truth: the detections of the clean image above ``thr``."""
    pred = predicted(model, image, sample)
    keep = pred.scores > thr
    return InstanceData(bboxes=pred.bboxes[keep], labels=pred.labels[keep])


def oracle_loss(model, image, sample, gt, seed, loss_fn):
    """TOG's loss of ``image`` (differentiable) against ``gt``, the model's
    random draws seeded as the attack seeds them."""
    s = sample.clone()
    s.gt_instances = gt
    with torch.random.fork_rng():
        torch.manual_seed(seed % (2 ** 63))
        data = model.data_preprocessor(dict(inputs=[image], data_samples=[s]), False)
        with loss_mode(model):
            return loss_fn(model.loss(data['inputs'], data['data_samples']))


def oracle_first_step(model, image, sample, gt, attack_seed, loss_fn, eps=8.0, eps_iter=2.0):
    """TOG's first step on the 0..255 scale from the start the attack draws."""
    x0 = image.double().numpy()
    eta = uniform_start(image, None, attack_seed, eps, (0.0, 255.0)).double().numpy()

    def grad_fn(x_adv):
        x = torch.from_numpy(x_adv).float().requires_grad_()
        loss = oracle_loss(model, x, sample, gt, attack_seed * 1_000_003, loss_fn)
        return torch.autograd.grad(loss, x)[0].double().numpy()

    return tog_loop(x0, eta, grad_fn, n_iter=1, eps=eps, eps_iter=eps_iter, upper=255.0)


def tog_rows(dets):
    """mmdag's clean detections as TOG's rows ``[class, conf, scores..., box]``."""
    return np.concatenate([dets['labels'][:, None].double().numpy(),
                           dets['scores'][:, None].double().numpy(),
                           dets['class_scores'].double().numpy(),
                           dets['bboxes'].double().numpy()], axis=1)


# -------------------------------------------------------------------- tests
def test_the_threshold_is_toGs_for_the_kind_of_model(toy):
    model, _, _, t = toy
    kind = 'frcnn' if hasattr(model, 'roi_head') else 'yolov3'
    assert tog_model_kind(model) == kind
    assert t.tog_score_thr() == TOG_SCORE_THR[kind] == {'frcnn': 0.7, 'yolov3': 0.2}[kind]
    from types import SimpleNamespace
    ssd_like = SimpleNamespace(bbox_head=SimpleNamespace(use_sigmoid_cls=False))
    assert tog_model_kind(ssd_like) == 'ssd' and TOG_SCORE_THR['ssd'] == 0.5


def test_the_pseudo_ground_truth_is_the_clean_detections_above_the_threshold(toy):
    model, images, batch, t = toy
    thr = t.tog_score_thr()
    with attack_mode(model):
        dets = t.clean_detections(images, [0, 1], thr)
        for k, d in enumerate(dets):
            gt = pseudo_gt(model, images[k], batch['data_samples'][k], thr)
            assert len(gt) > 0, 'the toy detects nothing at TOG\'s threshold'
            assert torch.equal(d['bboxes'], gt.bboxes) and torch.equal(d['labels'], gt.labels)
            assert (d['scores'] > thr).all()
            # mutation: the model's own test threshold keeps more
            assert len(predicted(model, images[k], batch['data_samples'][k])) > len(gt)
            # mutation: the annotations are another ground truth
            ann = batch['data_samples'][k].gt_instances
            assert len(ann) != len(gt) or not torch.equal(ann.labels, gt.labels)


def test_the_loss_is_the_models_own_on_the_clean_detections(toy):
    model, images, batch, t = toy
    thr = t.tog_score_thr()
    with attack_mode(model):
        t.clean_detections(images, [0, 1], thr)
        ours = t.detector_loss(images, [0, 1], [3, 4], gt='clean')
        ann = t.detector_loss(images, [0, 1], [3, 4])
        for k in range(2):
            gt = pseudo_gt(model, images[k], batch['data_samples'][k], thr)
            theirs = oracle_loss(model, images[k], batch['data_samples'][k], gt, 3 + k,
                                 mislabeling_loss)
            assert torch.equal(ours[k], theirs)
            assert not torch.equal(ann[k], theirs)   # mutation: the annotations


def test_ml_and_ll_are_toGs_and_the_class_scores_those_of_each_detection():
    model, images, batch, t = two_stage()
    thr = t.tog_score_thr()
    with attack_mode(model):
        dets = t.clean_detections(images, [0, 1], thr)
    for d in dets:
        cs = d['class_scores']
        assert cs.shape == (len(d['labels']), 80) and cs.dtype == torch.float64
        # the row is the detection's own proposal: its class's probability is the score
        assert (cs.gather(1, d['labels'][:, None])[:, 0].exp()
                - d['scores'].double()).abs().max() < 1e-12
        rows = tog_rows(d)
        ml = generate_attack_targets(rows, 'ml', thr)[:, 0].astype(np.int64)
        ll = generate_attack_targets(rows, 'll', thr)[:, 0].astype(np.int64)
        assert tog_ml_labels(cs, thr).tolist() == ml.tolist()
        assert tog_ll_labels(cs).tolist() == ll.tolist()
        # ml is another class than the detected one, the next most likely
        assert (torch.from_numpy(ml) != d['labels']).all()
        assert ml.tolist() != ll.tolist()   # mutation: the other mode
        # mutation: no class masked (a threshold of 1) gives the detected class back
        assert tog_ml_labels(cs, 1.0).tolist() == d['labels'].tolist()
        for mode, want in (('ml', ml), ('ll', ll)):
            got = TOGMislabel(adv_labels=mode).relabel(0, d, t, thr)
            assert got.tolist() == want.tolist()


@pytest.mark.parametrize('attack_cls', [TOGUntargeted, TOGMislabel])
def test_the_first_step_is_toGs(toy, attack_cls):
    model, images, batch, t = toy
    thr = t.tog_score_thr()
    kw = {} if attack_cls is TOGUntargeted or hasattr(model, 'roi_head') else dict(
        adv_labels='random')
    attack = attack_cls(max_iters=1, **kw)
    with attack_mode(model):
        res = attack(images, t)
        dets = t.clean_detections(images, [0, 1], thr)
    seeds = derive_seeds(attack.seed, None, 2)
    for k in range(2):
        gt = pseudo_gt(model, images[k], batch['data_samples'][k], thr)
        if attack_cls is TOGMislabel:
            gt.labels = attack.relabel(seeds[k], dets[k], t, thr)
            assert (gt.labels != dets[k]['labels']).any()
            loss_fn, wrong_fn = mislabeling_loss, untargeted_loss
        else:
            loss_fn, wrong_fn = untargeted_loss, mislabeling_loss
        with attack_mode(model):
            theirs = oracle_first_step(model, images[k], batch['data_samples'][k], gt, seeds[k],
                                       loss_fn)
            # mutation: the opposite sign
            wrong = oracle_first_step(model, images[k], batch['data_samples'][k], gt, seeds[k],
                                      wrong_fn)
        ours = res.adv_images[k].double().numpy()
        # the step is 2 on 0..255; float32 resolves 255 to about 3e-5
        assert np.abs(ours - theirs).max() < 1e-3
        assert np.abs(ours - wrong).max() > 1.0
        assert np.abs(ours - images[k].double().numpy()).max() <= 8 + 1e-4


def _matched(model, image, sample, dets, labels, thr):
    """Per clean detection, the best score of a detection of ``labels`` above
    ``thr`` that overlaps it (IoU >= 0.5) on ``image``, 0 where none does."""
    from mmdet.structures.bbox import bbox_overlaps
    pred = predicted(model, image, sample)
    pred = pred[pred.scores > thr]
    if not len(pred):
        return torch.zeros(len(labels))
    iou = bbox_overlaps(dets['bboxes'], pred.bboxes)
    same = labels[:, None] == pred.labels[None, :]
    return torch.where((iou >= 0.5) & same, pred.scores[None, :], torch.zeros_like(iou)).max(1)[0]


@pytest.mark.slow   # three steps of two attacks per toy: about 1-2 min on a CPU
def test_untargeted_changes_the_detections_and_mislabel_raises_the_target_class(toy):
    """Untargeted (TOG's "random" errors): the loss against the clean
    detections rises and the detections above the threshold are no longer
    the clean ones (one lost, or one found where no clean detection of its
    class is); mislabel: the loss towards the relabelled detections falls and
    the relabelled class scores higher on the clean boxes. The model is left
    as it was. Three steps on one image keep this short on a CPU."""
    from mmdet.structures.bbox import bbox_overlaps
    model, images, batch, t = toy
    thr = t.tog_score_thr()
    images, sample = images[:1], batch['data_samples'][0]
    with attack_mode(model):
        t = type(t)(model, images, [sample], **(TARGETS if hasattr(model, 'roi_head') else {}))
        correct_on_clean(t, images)
    model.train()
    before = snapshot(model)
    kw = {} if hasattr(model, 'roi_head') else dict(adv_labels='random')
    mis_attack = TOGMislabel(max_iters=3, **kw)
    with attack_mode(model):
        dets = t.clean_detections(images, [0], thr)[0]
        unt = TOGUntargeted(max_iters=3)(images, t)
        mis = mis_attack(images, t)
        target = mis_attack.relabel(derive_seeds(0, None, 1)[0], dets, t, thr)
        loss = {name: float(t.detector_loss(xs, [0], [1], gt='clean')[0])
                for name, xs in (('clean', images), ('unt', unt.adv_images))}
        for name, xs in (('mis_clean', images), ('mis', mis.adv_images)):
            loss[name] = float(t.detector_loss(xs, [0], [1], gt='clean', labels=[target])[0])
    check_unchanged(model, before)
    model.eval()
    assert loss['unt'] > loss['clean'] and loss['mis'] < loss['mis_clean']
    own = dets['labels']
    assert (_matched(model, images[0], sample, dets, own, thr) > 0).all()
    lost = bool((_matched(model, unt.adv_images[0], sample, dets, own, thr) == 0).any())
    adv = predicted(model, unt.adv_images[0], sample)
    adv = adv[adv.scores > thr]
    iou = bbox_overlaps(adv.bboxes, dets['bboxes'])
    found = ((iou >= 0.5) & (adv.labels[:, None] == own[None, :])).any(1)
    assert lost or not found.all()
    scores = [float(_matched(model, x, sample, dets, target, 0.0).sum())
              for x in (images[0], mis.adv_images[0])]
    assert scores[1] > scores[0], scores


def test_an_image_without_detection_takes_the_loss_against_nothing():
    model, images, batch, t = two_stage()
    with attack_mode(model):
        t.clean_detections(images, [0], 0.999999)
        ours = t.detector_loss(images, [0], [9], gt='clean', score_thr=0.999999)[0]
        empty = InstanceData(bboxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.long))
        theirs = oracle_loss(model, images[0], batch['data_samples'][0], empty, 9,
                             mislabeling_loss)
        assert torch.equal(ours, theirs)
        res = TOGUntargeted(max_iters=2, score_thr=0.999999)(images, t)
        # mislabel has nothing to relabel there: the empty ground truth, descended
        mis = TOGMislabel(max_iters=1, adv_labels='ml', score_thr=0.999999)(images, t)
    assert (res.adv_images[0] != images[0]).any() and (mis.adv_images[0] != images[0]).any()


def test_bad_settings_and_models_are_refused_in_one_line():
    with pytest.raises(ValueError, match='adv_labels'):
        TOGMislabel(adv_labels='least_likely')
    with pytest.raises(ValueError, match='score_thr'):
        TOGUntargeted(score_thr=1.5)
    model, images, batch, t = one_stage()
    with attack_mode(model):
        with pytest.raises(MMDagError, match="'ml' needs the class scores"):
            TOGMislabel(max_iters=1)(images, t)
        with pytest.raises(ValueError, match='gt must be one of'):
            t.detector_loss(images, [0], [0], gt='detections')
    model, images, batch, _ = two_stage()
    with attack_mode(model):
        fresh = TwoStageTargets(model, images, batch['data_samples'], **TARGETS)
        with pytest.raises(MMDagError, match='no clean detections yet'):
            fresh.detector_loss(images, [0], [0], gt='clean')
    from mmdag.targets import SegmentationTargets
    from test_segmentation import TINY
    from test_segmentation import build as build_seg
    from test_segmentation import make_batch as seg_batch
    seg = build_seg(TINY)
    sb = seg_batch(num=1)
    with attack_mode(seg):
        st = SegmentationTargets(seg, [x.float() for x in sb['inputs']], sb['data_samples'])
        with pytest.raises(MMDagError, match='attacks detectors'):
            TOGUntargeted(max_iters=1)([x.float() for x in sb['inputs']], st)
