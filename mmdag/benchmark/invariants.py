"""Invariants of a target set, checked by the zoo survey on every family.

Each check takes the model, the adapter (a :class:`TargetSet` built on a
one-image batch) and the clean image, and returns a list of violations (one
line each; empty when the invariant holds) or, where the family offers
nothing to check, says so in a note. The survey records both; its slow test
fails on any violation. The checks are generic on purpose: a new head or
adapter is covered by construction, not by a review.

* :func:`pre_activation` (a): the attacked quantity is a logit (or a
  log-probability, or the log of a mask classifier's class score), not a
  score. The classifier's bias of the true class, shifted by -20, must move
  the attacked values by more than a score in [0, 1] ever can; shifted by
  +20, it must raise them.
* :func:`settings_used` (c): the settings the report prints (``targets.settings``)
  are the ones the adapter applies: the score threshold of the sigmoid rule,
  and the two-stage proposal rule (IoU, clean score, proposal count).
* :func:`agrees_with_predict` (d): for segmentation, "correct" at a pixel is
  exactly "the stock prediction outputs the true label there". Detection
  adapters follow the paper's target definition (proposals, priors, queries
  assigned to an object), which is not one-to-one with the boxes mmdet
  outputs after NMS; for them the check records the clean figures (stock true
  positives, correct targets) without asserting.
"""
import itertools
from typing import List, Optional, Tuple

import torch
from torch import Tensor

#: the class-bias shift of the pre-activation check
BIAS_SHIFT = 20.0
#: how far the attacked values must move under that shift: more than a score
#: in [0, 1] can (a cascade averaging three stages' logits moves 20 / 3)
MIN_MOVE = 5.0
#: how far they must rise under +20: logits rise by 20, but log-probabilities
#: and the log class scores of the mask classifiers are bounded above (by 0,
#: by log Q), so upwards only the direction is checked
MIN_RISE = 0.5


def _linear_layers(model):
    return [(name, m) for name, m in model.named_modules()
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) and m.bias is not None]


def classifier_bias(model, targets, image: Tensor) -> Optional[Tuple[str, Tensor, Tensor]]:
    """The bias that scores the attacked classes, found by its gradient.

    Among the convolution and linear layers with a bias, the last one run in
    the targets' forward whose bias gets a gradient from the true-class
    values; its channels whose gradient is positive are the true class's (a
    gradient, not a layout guess: anchors, background slots and per-level
    heads are covered alike). Returns ``(name, bias, channels)`` or None.
    """
    from mmdag.engine.step import attack_mode
    layers = _linear_layers(model)
    order, tick = {}, itertools.count()
    hooks = [m.register_forward_hook(
        lambda mod, inp, out, name=name: order.__setitem__(name, next(tick)))
        for name, m in layers]
    try:
        with attack_mode(model):
            for _, m in layers:
                m.bias.requires_grad_(True)
                m.bias.grad = None
            values = targets.logits([image], [0])[0]
            labels = targets.labels[0]
            if values.numel() == 0 or not values.requires_grad:
                return None
            values.gather(1, labels[:, None].to(values.device)).sum().backward()
            grads = {name: m.bias.grad for name, m in layers if m.bias.grad is not None}
    finally:
        for h in hooks:
            h.remove()
    live = [name for name, g in grads.items() if name in order and bool((g > 0).any())]
    if not live:
        return None
    name = max(live, key=order.get)
    bias = dict(layers)[name].bias
    channels = torch.nonzero(grads[name] > 0)[:, 0]
    bias.grad = None
    for _, m in layers:
        m.bias.grad = None
    return name, bias, channels


def pre_activation(model, targets, image: Tensor) -> Tuple[List[str], str]:
    """(a): shifting the true class's bias by -20 lowers the attacked values
    by more than :data:`MIN_MOVE` (a score in [0, 1] cannot fall that far);
    by +20, it raises them (by more than :data:`MIN_RISE`)."""
    from mmdag.engine.step import attack_mode
    found = classifier_bias(model, targets, image)
    if found is None:
        return [], 'no classifier bias reaches the attacked values (not checked)'
    name, bias, channels = found
    labels = targets.labels[0]

    def true_values():
        with attack_mode(model), torch.no_grad():
            v = targets.logits([image], [0])[0]
        return v.gather(1, labels[:, None].to(v.device))[:, 0].float()

    clean = true_values()
    saved = bias.detach().clone()
    try:
        with torch.no_grad():
            bias[channels] -= BIAS_SHIFT
        down = true_values()
        with torch.no_grad():
            bias.copy_(saved)
            bias[channels] += BIAS_SHIFT
        up = true_values()
    finally:
        with torch.no_grad():
            bias.copy_(saved)
    fall, rise = float((clean - down).max()), float((up - clean).max())
    note = (f'{name}: -{BIAS_SHIFT:g} moves the true-class values by up to {fall:.2f}, '
            f'+{BIAS_SHIFT:g} by {rise:.2f}')
    problems = []
    if not fall > MIN_MOVE:
        problems.append(f'bounded below (a score, not a logit): {note}')
    if not rise > MIN_RISE:
        problems.append(f'does not rise with its class bias: {note}')
    return problems, note


def settings_used(targets, image: Tensor, sample) -> List[str]:
    """(c): the printed settings are the applied ones."""
    settings = getattr(targets, 'settings', {}) or {}
    problems = []
    thr = settings.get('score_thr')
    if thr is not None and getattr(targets, 'sigmoid', False):
        # the sigmoid rule: a true-class score just above the printed
        # threshold is correct, just below it is not
        from mmdag.targets.common import score_logit
        logit = score_logit(thr)
        labels = targets.labels[0][:1].cpu()
        if len(labels):
            rows = torch.full((2, targets.num_classes), -30.0)
            rows[0, labels[0]], rows[1, labels[0]] = logit + 0.05, logit - 0.05
            got = targets.correct(rows, labels.repeat(2)).tolist()
            if got != [True, False]:
                problems.append(f'score_thr={thr} printed, but a true-class score just above / '
                                f'below it is correct: {got}')
    if 'rpn_max_per_img' in settings:   # the two-stage proposal rule
        from mmdet.structures.bbox import bbox_overlaps

        from mmdag.engine.step import attack_mode
        from mmdag.targets.common import gt_in_input_frame
        boxes = targets.boxes[0]
        if len(boxes) > settings['rpn_max_per_img']:
            problems.append(f'{len(boxes)} proposals, more than rpn_max_per_img='
                            f'{settings["rpn_max_per_img"]}')
        gt = gt_in_input_frame(sample, 'original', boxes.device)
        if len(boxes) and gt is not None and len(gt):
            with attack_mode(targets.model), torch.no_grad():
                probs = targets.logits([image], [0])[0].softmax(1)
            iou = bbox_overlaps(boxes, gt.bboxes)
            lab = targets.labels[0]
            passes = (iou > settings['iou_thr']) & (gt.labels[None] == lab[:, None])
            score = probs.gather(1, lab[:, None])[:, 0]
            bad = int((~passes.any(1) | ~(score > settings['score_thr'])).sum())
            if bad:
                problems.append(f'{bad} of {len(boxes)} target proposals fail the printed rule '
                                f'(IoU > {settings["iou_thr"]} with a box of their label, clean '
                                f'score > {settings["score_thr"]})')
    return problems


def agrees_with_predict(model, targets, image: Tensor, batch: dict) -> Tuple[List[str], dict]:
    """(d): "correct" against the stock prediction on the clean image.

    Both forwards run with the same seed (a model may draw random numbers at
    every forward, in eval mode too). Returns the violations (segmentation
    only) and the clean figures: ``correct`` targets, ``stochastic`` (whether
    two forwards of the same image differ), and ``stock_correct`` (pixels
    the stock prediction gets right) or, for detectors, ``stock_tp`` (stock
    detections of a true label with IoU >= 0.5 with its box, at the model's
    own test score threshold)."""
    from mmdag.engine.step import attack_mode

    def seeded(fn, seed=0):
        # the same random draws for both sides: some heads draw at every
        # forward, in eval mode too (SegNeXt's Hamburger draws its bases)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return fn()

    def adapter_values(seed=0):
        with attack_mode(model), torch.no_grad():
            return seeded(lambda: targets.logits([image], [0])[0], seed)

    values = adapter_values()
    labels = targets.labels[0].to(values.device)
    correct = targets.correct(values, labels)
    figures = dict(correct=int(correct.sum()))
    # a model whose forward is random: every forward of the attack (and the
    # prediction it is scored on) sees other draws
    figures['stochastic'] = not torch.allclose(values, adapter_values(1), rtol=1e-4, atol=1e-4)
    try:
        with torch.no_grad():
            pred = seeded(lambda: model.test_step(batch)[0])
    except Exception as e:   # noqa: B902 - the stock code's own failure, not mmdag's
        # (e.g. mmdet's mask pasting on the degenerate boxes of random
        # weights): nothing to compare with
        figures['stock_error'] = f'{type(e).__name__}: {str(e).splitlines()[0][:160]}'
        return [], figures
    problems = []
    if 'pred_sem_seg' in pred:
        # pixel targets, indexed in the frame of the prediction (the metric's)
        stock = pred.pred_sem_seg.data.flatten().to(values.device)[targets.index[0]] == labels
        top2 = values.topk(2, dim=1).values
        clear = (top2[:, 0] - top2[:, 1]) > 1e-3    # a tie may fall either way
        differ = int(((stock != correct) & clear).sum())
        figures['stock_correct'] = int(stock.sum())
        if differ:
            problems.append(f'{differ} of {len(labels)} pixels: "correct" differs from the stock '
                            'prediction')
    elif 'pred_instances' in pred:
        from mmdet.structures.bbox import bbox_overlaps
        inst = pred.pred_instances
        gt = batch['data_samples'][0].gt_instances
        if len(inst) and len(gt):
            iou = bbox_overlaps(inst.bboxes.float().cpu(), gt.bboxes.float().cpu())
            same = inst.labels.cpu()[:, None] == gt.labels.cpu()[None]
            figures['stock_tp'] = int(((iou >= 0.5) & same).any(1).sum())
        else:
            figures['stock_tp'] = 0
    return problems, figures
