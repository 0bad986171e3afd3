"""The detector's own loss as DetPGD takes it (mmdag.targets.det_loss), on a
Faster R-CNN with random weights: what it is (the sum of the model's loss
terms, the ground truth in the input frame), that it is reproducible and
independent of the batch, that nothing of the model changes, and what
DetPGD achieves with it."""
import copy

import pytest
import torch
from mmengine.structures import InstanceData

from mmdag.apis import attack_batch
from mmdag.errors import MMDagError
from mmdag.targets import TwoStageTargets
from mmdag.targets.det_loss import loss_mode, sum_losses
from test_two_stage import TARGETS, build, make_batch


def targets_of(model, batch):
    images = [x.float() for x in batch['inputs']]
    return images, TwoStageTargets(model, images, batch['data_samples'], **TARGETS)


def test_sum_losses_sums_what_parse_losses_sums_and_cls_keeps_the_classification_terms():
    t = torch.tensor
    losses = dict(loss_rpn_cls=[t([1.0, 3.0]), t(2.0)], loss_rpn_bbox=[t(5.0)], loss_cls=t(7.0),
                  acc=t(100.0), loss_bbox=t([1.0, 1.0]), loss_obj=t(0.5))
    assert float(sum_losses(losses, 'all')) == 2 + 2 + 5 + 7 + 1 + 0.5
    assert float(sum_losses(losses, 'cls')) == 2 + 2 + 7 + 0.5
    with pytest.raises(MMDagError, match='no .* loss term'):
        sum_losses(dict(loss_bbox=t(1.0)), 'cls')


def test_the_loss_is_the_models_own_on_the_input_frame_ground_truth():
    """Our loss of an image whose boxes are given in the original frame
    (scale factor 2) equals the model's ``loss()`` on the same image with the
    boxes written out in the input frame, under the same seed."""
    model = build('faster_fpn')
    batch = make_batch(num=1)
    images, t = targets_of(model, batch)
    ours = t.detector_loss(images, [0], [7])[0]
    sample = copy.deepcopy(batch['data_samples'][0])
    sample.gt_instances = InstanceData(bboxes=sample.gt_instances.bboxes * 2,
                                       labels=sample.gt_instances.labels)
    with torch.random.fork_rng():
        torch.manual_seed(7)
        data = model.data_preprocessor(dict(inputs=images, data_samples=[sample]), False)
        with loss_mode(model):
            theirs = sum_losses(model.loss(data['inputs'], data['data_samples']))
    assert torch.equal(ours, theirs)
    # the terms DetPGD ascends differ with the frame: a wrong frame is seen
    sample.gt_instances.bboxes = sample.gt_instances.bboxes / 2
    with torch.random.fork_rng():
        torch.manual_seed(7)
        data = model.data_preprocessor(dict(inputs=images, data_samples=[sample]), False)
        with loss_mode(model):
            wrong = sum_losses(model.loss(data['inputs'], data['data_samples']))
    assert not torch.equal(ours, wrong)


def test_loss_mode_keeps_normalisation_and_dropout_in_eval_and_restores_every_flag():
    model = build('faster_fpn')
    model.roi_head.bbox_head.add_module('drop', torch.nn.Dropout(0.5))
    before = {n: m.training for n, m in model.named_modules()}
    with loss_mode(model):
        inside = {n: m for n, m in model.named_modules()}
        bns = [m for m in inside.values() if isinstance(m, torch.nn.BatchNorm2d)]
        assert bns and not any(m.training for m in bns)
        assert not model.roi_head.bbox_head.drop.training
        assert model.training and model.rpn_head.training and model.roi_head.training
    assert {n: m.training for n, m in model.named_modules()} == before


def test_loss_mode_restores_the_statistics_a_loss_keeps_itself():
    """GHM-C's loss updates its ``acc_sum`` buffer at every call in training:
    loss mode puts it back, as it does every buffer."""
    from mmdet.models.losses import GHMC
    model = build('faster_fpn')
    model.rpn_head.loss_cls = GHMC(bins=10, momentum=0.75)
    before = model.rpn_head.loss_cls.acc_sum.clone()
    batch = make_batch(num=1)
    images, t = targets_of(model, batch)
    t.detector_loss(images, [0], [1])
    assert torch.equal(model.rpn_head.loss_cls.acc_sum, before)
    with loss_mode(model):
        model.rpn_head.loss_cls.acc_sum.add_(1)
    assert torch.equal(model.rpn_head.loss_cls.acc_sum, before)


def test_the_loss_is_reproducible_independent_of_the_batch_and_differentiable():
    model = build('faster_fpn')
    batch = make_batch(num=2)
    # the second image larger: another canvas in the same batch
    big = make_batch(num=1, h=128, w=160, seed=3)
    batch['inputs'][1], batch['data_samples'][1] = big['inputs'][0], big['data_samples'][0]
    images, t = targets_of(model, batch)
    xs = [x.clone().requires_grad_() for x in images]
    both = t.detector_loss(xs, [0, 1], [11, 12])
    again = t.detector_loss(images, [0, 1], [11, 12])
    assert [float(v.detach()) for v in both] == [float(v) for v in again]
    alone = [targets_of(model, dict(inputs=[batch['inputs'][k]],
                                    data_samples=[batch['data_samples'][k]]))
             for k in range(2)]
    for k, (im, tk) in enumerate(alone):
        assert float(tk.detector_loss(im, [0], [11 + k])[0]) == float(both[k].detach())
    g = torch.autograd.grad(both[0] + both[1], xs)
    assert all(torch.isfinite(v).all() and v.abs().sum() > 0 for v in g)


# 23 s on 2 cores (2026-12-07): with the slow checks, to keep the fast suite under 15 min
@pytest.mark.slow
def test_detpgd_raises_the_loss_inside_the_budget_and_leaves_the_model_as_it_was():
    model = build('faster_fpn')
    batch = make_batch(num=2)
    images, t = targets_of(model, batch)
    seeds = [5, 6]
    clean = [float(v) for v in t.detector_loss(images, [0, 1], seeds)]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    res, _ = attack_batch(model, batch, dict(type='DetPGD', max_iters=5, epsilon=8, alpha=2),
                          TARGETS)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    adv = [float(v) for v in t.detector_loss(res.adv_images, [0, 1], seeds)]
    assert all(a > c for a, c in zip(adv, clean)), (clean, adv)
    for x0, xa in zip(images, res.adv_images):
        assert (xa - x0).abs().max() <= 8 + 1e-4 and xa.min() >= 0 and xa.max() <= 255


def test_a_segmentor_has_no_detector_loss():
    from test_segmentation import TINY
    from test_segmentation import build as build_seg
    from test_segmentation import make_batch as seg_batch
    model = build_seg(TINY)
    with pytest.raises(MMDagError, match='detpgd attacks detectors'):
        attack_batch(model, seg_batch(num=1), dict(type='DetPGD', max_iters=1))
