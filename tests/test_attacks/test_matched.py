"""The matched-target attacks (mmdag's own variants, on the targets the
adapters match to the ground truth): the step each takes (an oracle written
out for a linear toy: minus the sign of the gradient of the background
cross-entropy, or of the sigmoid scores' BCE against 0; the cross-entropy
towards drawn labels; the clean detections' cross-entropy ascended), what it
achieves (the background probability up, the scores down, targets lost), its
budget, and the refusal of targets without a background (segmentation)."""
import pytest
import torch

from mmdag.attacks import MatchedMislabel, MatchedUntargeted, MatchedVanishing
from mmdag.attacks.labels import random_labels
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


class SoftmaxDetections(LinearPixels):
    background = C - 1
    exclude_adv = (C - 1,)   # as the detection adapters: never an adversarial label


class SigmoidDetections(LinearPixels):
    activation = 'sigmoid'

    def correct(self, logits, labels):   # still detected: its class scores above 0.5
        return logits.gather(1, labels[:, None])[:, 0] > 0


def logits_of(w, b, x):
    return torch.einsum('ck,kn->nc', w, x.flatten(1)) + b


def test_one_step_follows_the_background_cross_entropy():
    w, b, imgs, labels = problem()
    res = MatchedVanishing(alpha=2.0, max_iters=1, random_start=False)(
        imgs, SoftmaxDetections(w, b, labels))
    for x, r in zip(imgs, res.perturbations):
        p = logits_of(w, b, x).softmax(1)                   # [N, C]
        grad_ce = p @ w - w[C - 1]                           # d CE(z, bg) / d x, per pixel
        expect = (-2.0 * grad_ce.sign()).T.reshape(r.shape)  # descend it
        torch.testing.assert_close(r, expect, atol=1e-4, rtol=0)


def test_one_step_follows_the_sigmoid_scores():
    w, b, imgs, labels = problem(seed=1)
    res = MatchedVanishing(alpha=2.0, max_iters=1, random_start=False)(
        imgs, SigmoidDetections(w, b, labels))
    for x, r in zip(imgs, res.perturbations):
        s = logits_of(w, b, x).sigmoid()                    # d BCE(z, 0) / dz = sigmoid(z)
        expect = (-2.0 * (s @ w).sign()).T.reshape(r.shape)
        torch.testing.assert_close(r, expect, atol=1e-4, rtol=0)


@pytest.mark.parametrize('kind', [SoftmaxDetections, SigmoidDetections])
def test_detections_vanish_inside_the_budget(kind):
    w, b, imgs, labels = problem(seed=2)
    res = MatchedVanishing(epsilon=64.0, alpha=16.0, max_iters=6, seed=1)(imgs, kind(w, b, labels))
    for x, adv, s in zip(imgs, res.adv_images, res.stats):
        assert float((adv - x).abs().max()) <= 64.0 + 1e-4
        assert 0 <= float(adv.min()) and float(adv.max()) <= 255
        z0, z1 = logits_of(w, b, x), logits_of(w, b, adv)
        if kind is SoftmaxDetections:
            assert z1.softmax(1)[:, C - 1].mean() > z0.softmax(1)[:, C - 1].mean()
        else:   # the loss it descends: the BCE of every score against 0
            assert torch.nn.functional.softplus(z1).sum() < torch.nn.functional.softplus(z0).sum()
        assert s['num_correct'] > 0 and s['correct_frac'] < 1.0
        assert s['iters'] == 6 and s['backwards'] == 6


def test_targets_without_a_background_are_refused():
    w, b, imgs, labels = problem()
    with pytest.raises(MMDagError, match='TOG vanishing needs a detector'):
        MatchedVanishing(max_iters=1)(imgs, LinearPixels(w, b, labels))


def test_mislabel_steps_down_the_cross_entropy_towards_the_drawn_labels():
    w, b, imgs, labels = problem(seed=3)
    t = SoftmaxDetections(w, b, labels)
    res = MatchedMislabel(alpha=2.0, max_iters=1, random_start=False, seed=4)(imgs, t, seeds=[0, 1])
    for k, (x, r, adv) in enumerate(zip(imgs, res.perturbations, res.adv_labels)):
        z = logits_of(w, b, x)
        ok = z.argmax(1) == labels[k]
        # DAG's random labels from the image's seed, the background excluded
        drawn = random_labels(labels[k], C, torch.Generator().manual_seed(4 * 1_000_003 + k),
                              exclude=(C - 1,))
        assert torch.equal(adv, torch.where(ok, drawn, torch.full_like(drawn, -1)))
        assert not (adv == C - 1).any() and not (adv == labels[k]).any()
        p = z.softmax(1)
        onehot = torch.nn.functional.one_hot(adv.clamp_min(0), C).float()
        grad = ((p - onehot) * ok[:, None]) @ w           # d sum CE(z, adv) / d x, per pixel
        torch.testing.assert_close(r, (-2.0 * grad.sign()).T.reshape(r.shape), atol=1e-4, rtol=0)


def test_untargeted_steps_up_the_cross_entropy_of_the_clean_detections():
    w, b, imgs, labels = problem(seed=5)
    res = MatchedUntargeted(alpha=2.0, max_iters=1, random_start=False)(
        imgs, SoftmaxDetections(w, b, labels))
    for k, (x, r) in enumerate(zip(imgs, res.perturbations)):
        z = logits_of(w, b, x)
        ok = z.argmax(1) == labels[k]
        onehot = torch.nn.functional.one_hot(labels[k], C).float()
        grad = ((z.softmax(1) - onehot) * ok[:, None]) @ w
        torch.testing.assert_close(r, (2.0 * grad.sign()).T.reshape(r.shape), atol=1e-4, rtol=0)


@pytest.mark.parametrize('kind', [MatchedMislabel, MatchedUntargeted])
def test_mislabel_and_untargeted_flip_detections_inside_the_budget(kind):
    w, b, imgs, labels = problem(seed=2)
    res = kind(epsilon=64.0, alpha=16.0, max_iters=6, seed=1)(imgs, SoftmaxDetections(w, b, labels))
    for x, adv, s in zip(imgs, res.adv_images, res.stats):
        assert float((adv - x).abs().max()) <= 64.0 + 1e-4
        assert 0 <= float(adv.min()) and float(adv.max()) <= 255
        assert s['num_correct'] > 0 and s['correct_frac'] < 0.5
