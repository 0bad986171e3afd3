"""An image with nothing to attack comes back exactly clean, for every attack
whose loss needs targets correct on the clean image, and so does an image
whose clean logits are not finite, for every attack; the other images of
the batch are still attacked. An attack whose loss needs no correct
target (DetPGD, a detector's own loss) still attacks an image with none.

Segmentation: the demo FCN (briefly trained) through ``attack_batch``, image 0
relabelled so that no pixel is correct on the clean image (the issue's
reproduction: APGD's start in its ``2 eps`` ball was returned, and PGD's
random start). Detection: a linear toy whose detector loss is
``sum((x - c)^2)``, so that DetPGD's steps are known exactly."""
import copy

import pytest
import torch
import torch.nn.functional as F

from mmdag.apis import attack_batch
from mmdag.attacks import (APGD, DAG, NOT_ATTACKED, PGD, CosPGD, DetPGD, MatchedVanishing, SegPGD,
                           TOGFabrication, TOGMislabel, TOGUntargeted, TOGVanishing, WorstCase)
from mmdag.targets import SegmentationTargets
from test_dag import LinearPixels
from test_segmentation import TINY, build, make_batch

SEGMENTATION = {
    'dag': lambda: DAG(max_iters=5),
    'pgd': lambda: PGD(epsilon=4, max_iters=5),
    'pgd-zero-start': lambda: PGD(epsilon=4, max_iters=5, random_start=False),
    'segpgd': lambda: SegPGD(epsilon=4, max_iters=5),
    'cospgd': lambda: CosPGD(epsilon=4, max_iters=5),
    'apgd': lambda: APGD(epsilon=4, max_iters=10),
    'apgd-js': lambda: APGD(epsilon=4, max_iters=10, loss='js'),
    'worstcase': lambda: WorstCase(attacks=['dag', 'pgd', 'cospgd', 'apgd'], epsilon=4,
                                   max_iters=5),
}


class NonFinite:
    """The targets of ``inner``, with the logits of image 0 NaN from its
    ``after + 1``-th forward on (``after=0``: already on the clean image)."""

    def __init__(self, inner, after=0):
        self.inner, self.after, self.seen = inner, after, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def __len__(self):
        return len(self.inner)

    def logits(self, images, indices):
        out = list(self.inner.logits(images, indices))
        if 0 in indices:
            self.seen += 1
            if self.seen > self.after:
                k = list(indices).index(0)
                out[k] = out[k] * float('nan')
        return out


def clean(r):
    return torch.equal(r, torch.zeros_like(r))


@pytest.fixture(scope='module')
def fcn(trained_seg_checkpoint):
    model = build(TINY)
    ck = torch.load(trained_seg_checkpoint, map_location='cpu', weights_only=False)
    model.load_state_dict(ck['state_dict'])
    return model


def seg_batch(model, shifts=(1, 0)):
    """Two images labelled with their clean prediction plus ``shifts[k]``:
    with 1 every labelled pixel is wrong on the clean image, with 0 right."""
    batch = make_batch(num=2, h=40, w=56, seed=2)
    with torch.no_grad():
        preds = model.test_step(copy.deepcopy(batch))
    for k, shift in enumerate(shifts):
        gt = batch['data_samples'][k].gt_sem_seg.data
        pred = preds[k].pred_sem_seg.data
        gt[:] = torch.where(gt == 255, gt, (pred + shift) % 21)
    return batch


def res_epsilon(attack):
    """The attack's budget (DAG's none: None)."""
    return getattr(attack, 'epsilon', None)


def assert_attacked(res, k, epsilon=None):
    """Image ``k`` of ``res`` was attacked: it stepped, moved, and flipped
    targets, inside its budget."""
    s = res.stats[k]
    assert s['status'] not in NOT_ATTACKED and s['backwards'] > 0 and s['iters'] > 0
    assert s['correct_frac'] < 1 and not clean(res.perturbations[k])
    if epsilon is not None:
        assert res.perturbations[k].abs().max() <= epsilon + 1e-3


def assert_as_alone(res, k, res_alone):
    """Image ``k`` of ``res`` has the perturbation and the statistics the
    image alone in its batch gets (exactly: the toys' logits are per image;
    a model's batched forward differs from a batch of one by rounding)."""
    assert not clean(res.perturbations[k])
    assert torch.equal(res.perturbations[k], res_alone.perturbations[0])
    assert res.stats[k] == res_alone.stats[0]


@pytest.mark.parametrize('make', list(SEGMENTATION.values()), ids=list(SEGMENTATION))
def test_an_image_with_no_correct_pixel_comes_back_clean(make, fcn):
    batch = seg_batch(fcn)
    res, _ = attack_batch(fcn, batch, make())
    s = res.stats[0]
    assert s['num_targets'] > 0 and s['num_correct'] == 0
    assert s['status'] == 'none_correct' and s['correct_frac'] == 0.0 and s['trace'] == []
    assert clean(res.perturbations[0]) and s['linf'] == 0 and s['p'] == 0
    assert torch.equal(res.adv_images[0], batch['inputs'][0].float())
    # the other image: attacked, with pixels flipped
    assert res.stats[1]['num_correct'] == res.stats[1]['num_targets']
    assert_attacked(res, 1, res_epsilon(make()))


@pytest.mark.parametrize('make', list(SEGMENTATION.values()), ids=list(SEGMENTATION))
def test_an_image_with_non_finite_clean_logits_comes_back_clean(make, fcn):
    batch = seg_batch(fcn, shifts=(0, 0))
    images = [x.float() for x in batch['inputs']]
    targets = NonFinite(SegmentationTargets(fcn, images, batch['data_samples']))
    res = make()(images, targets)
    s = res.stats[0]
    assert s['status'] == 'non_finite' and s['iters'] == 0 and s['backwards'] == 0
    assert s['correct_frac'] != s['correct_frac']   # NaN: no decision
    assert clean(res.perturbations[0]) and torch.equal(res.adv_images[0], images[0])
    assert_attacked(res, 1, res_epsilon(make()))


@pytest.mark.parametrize('after', [2, 4])
def test_apgd_stopped_by_non_finite_logits_before_its_last_stage_comes_back_clean(after, fcn):
    """Before its last stage APGD moves in a ball of ``2 eps`` or ``1.5 eps``;
    an image whose logits turn non-finite there has no returned point in
    the budget: it comes back clean, and the batch is not lost."""
    batch = seg_batch(fcn, shifts=(0, 0))
    images = [x.float() for x in batch['inputs']]
    targets = NonFinite(SegmentationTargets(fcn, images, batch['data_samples']), after=after)
    res = APGD(epsilon=4, max_iters=10)(images, targets)
    s = res.stats[0]
    assert s['status'] == 'non_finite' and 0 < s['backwards'] < 10
    assert clean(res.perturbations[0])
    assert_attacked(res, 1, 4.0)


# ---------------------------------------------------------------- detection
C = 5   # the last class is the background
CENTRE = 100.0


class ToyDetector(LinearPixels):
    """Linear logits per pixel target, a background class, and a detector
    loss ``sum((x - CENTRE)^2)`` per image that needs no target at all (TOG's
    candidate losses: the same, signed by the mode)."""
    background = C - 1
    exclude_adv = (C - 1,)

    def logits(self, images, indices):   # an image without targets: [0, C]
        return [z[:self.labels[i].numel()]
                for z, i in zip(super().logits(images, indices), indices)]

    def detector_loss(self, images, indices, seeds, terms='all', gt='annotations',
                      score_thr=None, labels=None):
        return [((x - CENTRE) ** 2).sum() for x in images]

    def tog_score_thr(self):   # TOG's untargeted and mislabel: no detection
        return 0.5

    def clean_detections(self, images, indices, score_thr):
        return [dict(bboxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.long),
                     scores=torch.zeros(0), class_scores=torch.zeros(0, C)) for _ in indices]

    def candidate_loss(self, images, indices, mode='vanishing'):
        sign = 1.0 if mode == 'vanishing' else -1.0
        return [sign * ((x - CENTRE) ** 2).sum() for x in images]


def det_problem(seed=0, size=6):
    """Two images; on image 0 no target is detected as its object's class
    (its label is the clean prediction's next foreground class); on image 1
    every target is."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(C, 3, generator=g) * 0.1
    b = torch.randn(C, generator=g)
    b[C - 1] = -1e3   # no target is background on the clean images
    images = [torch.rand(3, size, size, generator=g) * 100 + 80 for _ in range(2)]
    pred = [(torch.einsum('ck,kn->nc', w, x.flatten(1)) + b).argmax(1) for x in images]
    labels = [(pred[0] + 1) % (C - 1), pred[1]]
    return w, b, images, labels


DETECTION = {
    'detpgd': lambda: DetPGD(max_iters=3),
    'detpgd-zero-start': lambda: DetPGD(max_iters=3, random_start=False),
    'togvanishing': lambda: TOGVanishing(max_iters=3),
    'togfabrication': lambda: TOGFabrication(max_iters=3),
    'matchedvanishing': lambda: MatchedVanishing(max_iters=3),
    'togmislabel': lambda: TOGMislabel(max_iters=3),
    'toguntargeted': lambda: TOGUntargeted(max_iters=3),
}


@pytest.mark.parametrize('make', list(DETECTION.values()), ids=list(DETECTION))
def test_a_detection_image_with_no_correct_target(make):
    """Clean when the attack's loss needs correct targets; attacked for all
    its steps when not (its statistics still say it had none to flip)."""
    w, b, images, labels = det_problem()
    attack = make()
    res = attack(images, ToyDetector(w, b, labels))
    s = res.stats[0]
    assert s['num_correct'] == 0 and s['status'] == 'none_correct'
    assert s['correct_frac'] == 0.0 and s['trace'] == [] and not s['converged']
    if attack.needs_correct_targets:
        assert clean(res.perturbations[0]) and s['backwards'] == 0
    else:
        assert s['iters'] == s['backwards'] == 3 and not clean(res.perturbations[0])
        assert res.perturbations[0].abs().max() <= attack.epsilon
    ref = make()([images[1]], ToyDetector(w, b, labels[1:]), seeds=[1])
    assert_as_alone(res, 1, ref)


@pytest.mark.parametrize('make', list(DETECTION.values()), ids=list(DETECTION))
def test_a_detection_image_with_non_finite_clean_logits_comes_back_clean(make):
    w, b, images, labels = det_problem()
    res = make()(images, NonFinite(ToyDetector(w, b, labels)))
    s = res.stats[0]
    assert s['status'] == 'non_finite' and s['backwards'] == 0 and s['iters'] == 0
    assert clean(res.perturbations[0])
    ref = make()([images[1]], ToyDetector(w, b, labels[1:]), seeds=[1])
    assert_as_alone(res, 1, ref)


@pytest.mark.parametrize('empty', [False, True], ids=['none-correct', 'no-targets'])
def test_detpgd_steps_up_its_loss_on_an_image_with_no_correct_target(empty):
    """DetPGD's loss is the detector's own, against the ground truth: an
    image whose targets are all wrong on the clean image, or that has no
    matched target at all, is attacked for every step, each one the sign
    step up the loss (away from the toy's centre)."""
    w, b, images, labels = det_problem()
    if empty:
        labels[0] = labels[0][:0]
    res = DetPGD(alpha=2.0, max_iters=3, random_start=False)(images, ToyDetector(w, b, labels))
    x = images[0]
    expect = (x + (6.0 * (x - CENTRE).sign()).clamp(-8, 8)).clamp(0, 255) - x
    torch.testing.assert_close(res.perturbations[0], expect, atol=1e-4, rtol=0)
    s = res.stats[0]
    assert s['status'] == ('no_targets' if empty else 'none_correct')
    assert s['iters'] == s['backwards'] == 3 and s['forwards'] == 4
    assert s['num_correct'] == 0 and s['correct_frac'] == 0.0 and s['trace'] == []
    assert not DetPGD.needs_correct_targets and PGD.needs_correct_targets


def test_a_loss_of_the_logits_that_needs_no_correct_target():
    """The base loop hands such a loss the logits of an image with no
    correct target at every step, with its (empty) attacked set."""
    seen = []

    class Away(PGD):
        needs_correct_targets = False

        def loss(self, m, logits, labels, state, active, attacked):
            seen.append((m, int(attacked.sum()), int(active.sum())))
            return super().loss(m, logits, labels, state, active, attacked)

    w, b, images, labels = det_problem()
    res = Away(epsilon=4, alpha=2.0, max_iters=1, random_start=False)(
        images[:1], ToyDetector(w, b, labels[:1]))
    assert seen == [(0, 0, 0)]
    s = res.stats[0]
    assert s['status'] == 'none_correct' and s['backwards'] == 1 and s['iters'] == 1
    # the step is the sign of the cross-entropy's gradient, alpha long
    x = images[0].clone().requires_grad_(True)
    z = torch.einsum('ck,kn->nc', w, x.flatten(1)) + b
    g, = torch.autograd.grad(F.cross_entropy(z, labels[0]), x)
    torch.testing.assert_close(res.perturbations[0], 2.0 * g.sign(), atol=1e-4, rtol=0)


def test_quantize_rechecks_only_images_with_attacked_targets():
    """``quantize``: an image without a decision on the clean image is not
    forwarded again (nothing to count: its ``correct_frac`` stays NaN) and
    an 8-bit clean image stays exactly clean; the other is rounded and
    checked again."""
    w, b, images, labels = det_problem()
    images = [x.round() for x in images]
    res = PGD(epsilon=4, max_iters=2, quantize=True)(images, NonFinite(ToyDetector(w, b, labels)))
    s = res.stats[0]
    assert s['status'] == 'non_finite' and s['forwards'] == 1
    assert s['correct_frac'] != s['correct_frac'] and clean(res.perturbations[0])
    s = res.stats[1]
    assert s['forwards'] == 1 + 3 + 1 and s['backwards'] == 2
    assert torch.equal(res.adv_images[1], res.adv_images[1].round())
