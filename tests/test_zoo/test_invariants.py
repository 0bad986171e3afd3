"""The survey's invariant checks (mmdag.benchmark.invariants) on cheap models:
each passes on the real adapter and fails on an adapter broken the way a
review once found one (scores instead of logits, a printed threshold that is
not the applied one, "correct" in another frame than the prediction)."""
import pytest
import torch

from mmdag.benchmark import coverage as cov
from mmdag.benchmark import invariants as inv
from mmdag.targets import OneStageTargets, SegmentationTargets


@pytest.fixture(scope='module')
def fcn():
    model = cov.build_model('mmseg', cov.load_config(
        'mmseg', 'fcn/fcn_r18-d8_4xb2-80k_cityscapes-512x1024.py'))
    batch = cov.make_batch('mmseg', (48, 64))
    targets = SegmentationTargets(model, batch['inputs'], batch['data_samples'])
    return model, batch, targets


@pytest.fixture(scope='module')
def retinanet():
    model = cov.build_model('mmdet', cov.load_config('mmdet',
                                                     'retinanet/retinanet_r18_fpn_1x_coco.py'))
    batch = cov.make_batch('mmdet', (128, 128))
    targets = OneStageTargets(model, batch['inputs'], batch['data_samples'])
    assert len(targets.labels[0])
    return model, batch, targets


class _Wrapped:
    """An adapter whose attacked values are passed through ``fn``."""

    def __init__(self, targets, fn, **attrs):
        self.t, self.fn = targets, fn
        self.__dict__.update(attrs)

    def __getattr__(self, name):
        return getattr(self.t, name)

    def logits(self, images, indices):
        return [self.fn(v) for v in self.t.logits(images, indices)]


def test_pre_activation_passes_on_logits_and_fails_on_scores(fcn):
    model, batch, targets = fcn
    image = batch['inputs'][0].float()
    problems, note = inv.pre_activation(model, targets, image)
    assert problems == [] and note.startswith('decode_head.conv_seg:'), (problems, note)
    # the bias is put back
    again, _ = inv.pre_activation(model, targets, image)
    assert again == []
    # softmax scores (what SOLO's eval forward once handed over): bounded
    problems, _ = inv.pre_activation(model, _Wrapped(targets, lambda v: v.softmax(1)), image)
    assert problems and problems[0].startswith('bounded below'), problems
    # log-probabilities are fine (unbounded below, they rise towards 0)
    problems, _ = inv.pre_activation(model, _Wrapped(targets, lambda v: v.log_softmax(1)), image)
    assert problems == []


def test_pre_activation_finds_the_classifier_of_a_detector(retinanet):
    model, batch, targets = retinanet
    image = batch['inputs'][0].float()
    before = model.bbox_head.retina_cls.bias.detach().clone()
    problems, note = inv.pre_activation(model, targets, image)
    assert problems == [] and note.startswith('bbox_head.retina_cls:'), (problems, note)
    assert torch.equal(model.bbox_head.retina_cls.bias, before)
    problems, _ = inv.pre_activation(model, _Wrapped(targets, torch.sigmoid), image)
    assert problems and problems[0].startswith('bounded below')


def test_settings_used_catches_a_printed_threshold_that_is_not_applied(retinanet):
    model, batch, targets = retinanet
    image, sample = batch['inputs'][0].float(), batch['data_samples'][0]
    assert targets.settings['score_thr'] == 0.05
    assert inv.settings_used(targets, image, sample) == []
    lying = _Wrapped(targets, lambda v: v, settings=dict(targets.settings, score_thr=0.3))
    problems = inv.settings_used(lying, image, sample)
    assert len(problems) == 1 and 'score_thr=0.3 printed' in problems[0], problems


def test_segmentation_correct_agrees_with_predict_and_catches_a_flip(fcn):
    model, batch, targets = fcn
    image = batch['inputs'][0].float()
    problems, figures = inv.agrees_with_predict(model, targets, image, batch)
    assert problems == [] and figures['correct'] == figures['stock_correct'], figures
    # random weights: both outcomes occur, so the comparison is not of constant vectors
    assert 0 < figures["correct"] < len(targets.labels[0]), figures
    pred = model.test_step(batch)[0].pred_sem_seg.data[0]
    labels_map = batch['data_samples'][0].gt_sem_seg.data[0]
    assert figures['stock_correct'] == int((pred == labels_map).sum())
    # logits with classes 0 and 1 swapped (a class-order slip)
    problems, _ = inv.agrees_with_predict(model, _Wrapped(targets, lambda v: v[:, [1, 0] + list(
        range(2, v.shape[1]))]), image, batch)
    assert len(problems) == 1 and 'differs from the stock prediction' in problems[0], problems


def test_settings_used_checks_the_two_stage_proposal_rule():
    from mmdag.targets import TwoStageTargets
    model = cov.build_model('mmdet', cov.load_config(
        'mmdet', 'faster_rcnn/faster-rcnn_r18_fpn_8xb8-amp-lsj-200e_coco.py'))
    batch = cov.make_batch('mmdet', (128, 128))
    targets = TwoStageTargets(model, batch['inputs'], batch['data_samples'],
                              **dict(cov.RELAXED_TARGETS['TwoStageTargets'], iou_thr=0.05))
    image, sample = batch['inputs'][0].float(), batch['data_samples'][0]
    assert len(targets.boxes[0]) > 0
    assert inv.settings_used(targets, image, sample) == []
    # a report claiming a stricter rule than the one applied
    lying = _Wrapped(targets, lambda v: v, settings=dict(targets.settings, iou_thr=0.9))
    problems = inv.settings_used(lying, image, sample)
    assert len(problems) == 1 and 'fail the printed rule (IoU > 0.9' in problems[0], problems
    lying = _Wrapped(targets, lambda v: v, settings=dict(targets.settings, rpn_max_per_img=1))
    assert 'more than rpn_max_per_img=1' in inv.settings_used(lying, image, sample)[0]
