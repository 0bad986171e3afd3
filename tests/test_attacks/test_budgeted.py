"""PGD, SegPGD and CosPGD: the cospgd package's reference loop as the oracle
(the same start, the same steps: the same adversarial images within float
rounding), on a linear toy and on a small convolutional toy with its
normalisation inside the graph; the budget, the range, the per-image seeds,
and what each loss weighs."""
import pytest
import torch
import torch.nn.functional as F

from mmdag.attacks import PGD, CosPGD, SegPGD, TargetSet
from mmdag.attacks.budgeted import target_ce, target_probs
from reference_pgd import reference_attack
from test_dag import LinearPixels, make_problem

ATTACKS = dict(pgd=PGD, segpgd=SegPGD, cospgd=CosPGD)


class ConvPixels(TargetSet):
    """A small fully convolutional segmentor: normalisation, conv 3x3, ReLU,
    conv 1x1; the targets are the pixels whose label is not 255."""

    def __init__(self, net, gts):
        self.net, self.gts = net, gts
        self.index = [(g.flatten() != 255).nonzero().squeeze(1) for g in gts]
        super().__init__([g.flatten()[i] for g, i in zip(gts, self.index)], 5)

    def maps(self, x255):   # [B, 3, H, W] on 0..255 -> [B, C, H, W]
        mean = torch.tensor([123.7, 116.3, 103.5]).view(1, 3, 1, 1)
        std = torch.tensor([58.4, 57.1, 57.4]).view(1, 3, 1, 1)
        return self.net((x255 - mean) / std)

    def logits(self, images, indices):
        return [self.maps(x[None])[0].flatten(1).T[self.index[i]]
                for x, i in zip(images, indices)]


def conv_problem(num_images=2, size=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.Conv2d(8, 5, 1))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    images = [torch.rand(3, size, size, generator=g) * 255 for _ in range(num_images)]
    # the ground truth: the clean prediction with a quarter of it changed, a few ignored
    t = ConvPixels(net, [torch.zeros(size, size, dtype=torch.long)] * num_images)
    gts = []
    for x in images:
        with torch.no_grad():
            gt = t.maps(x[None])[0].argmax(0)
        flip = torch.rand(gt.shape, generator=g) < 0.25
        gt = torch.where(flip, (gt + 1) % 5, gt)
        gt[0, :3] = 255
        gts.append(gt)
    return net, images, gts


def linear_oracle_model(w, b):
    def model(x01):   # [B, 3, H, W] on 0..1
        return torch.einsum('ck,bkhw->bchw', w, x01 * 255) + b.view(1, -1, 1, 1)
    return model


def starts(attack, images):
    """The random start the attack draws for each image (the base derives the
    image's seed from the attack's and the image's position)."""
    return [images[i] + attack.start(images[i], None, attack.seed * 1_000_003 + i)
            for i in range(len(images))]


def compare_with_reference(kind, targets, images, model01, labels01, num_classes,
                           epsilon=8.0, alpha=2.55, iters=10, seed=5):
    attack = ATTACKS[kind](epsilon=epsilon, alpha=alpha, max_iters=iters, seed=seed)
    res = attack(images, targets)
    x0 = torch.stack(images) / 255
    ref = reference_attack(kind, model01, x0, labels01, torch.stack(starts(attack, images)) / 255,
                           epsilon / 255, alpha / 255, iters, num_classes)
    got = torch.stack(res.adv_images) / 255
    diff = (got - ref).abs()
    return res, diff


@pytest.mark.parametrize('kind', sorted(ATTACKS))
def test_the_same_images_as_the_reference_on_a_linear_toy(kind):
    pytest.importorskip('cospgd')
    w, b, imgs, labels = make_problem(num_images=2, size=8, num_classes=4, seed=3)
    # logits of a few units around mid-grey: the classes share the images, the
    # softmax does not saturate, and the budget flips pixels
    w = w * 0.05
    b = -128 * w.sum(1) + 0.1 * b
    labels = [(torch.einsum('ck,kn->nc', w, x.flatten(1)) + b).argmax(1) for x in imgs]
    # true labels: the clean prediction with some changed (wrong pixels for SegPGD)
    labels = [torch.where(torch.arange(y.numel()) % 3 == 0, (y + 1) % 4, y) for y in labels]
    targets = LinearPixels(w, b, labels)
    labels01 = torch.stack([y.view(8, 8) for y in labels])
    res, diff = compare_with_reference(kind, targets, imgs, linear_oracle_model(w, b), labels01,
                                       4, epsilon=40.0, alpha=5.0)
    # float rounding only (the scales differ by 255): no sign of a step differs
    assert diff.max() < 1e-5, diff.max()
    for s in res.stats:   # the clean check before the start, 10 steps, the last check
        assert s['iters'] == 10 and s['backwards'] == 10 and s['forwards'] == 12
        assert s['correct_frac'] < 1


@pytest.mark.parametrize('kind', sorted(ATTACKS))
def test_the_same_images_as_the_reference_on_a_conv_toy(kind):
    pytest.importorskip('cospgd')
    net, imgs, gts = conv_problem(seed=1)
    targets = ConvPixels(net, gts)

    def model01(x01):
        return targets.maps(x01 * 255)

    res, diff = compare_with_reference(kind, targets, imgs, model01, torch.stack(gts), 5,
                                       iters=20)
    assert diff.max() < 1e-5, diff.max()
    # the attack did something: fewer pixels correct than on the clean image
    assert all(s['correct_frac'] < 1 for s in res.stats)


@pytest.mark.parametrize('kind', sorted(ATTACKS))
def test_budget_range_and_last_iterate(kind):
    net, imgs, gts = conv_problem(seed=2)
    imgs[0][:, :2, :2] = 0.0   # pixels at the bottom of the range
    attack = ATTACKS[kind](epsilon=3.0, alpha=1.0, max_iters=7)
    res = attack(imgs, ConvPixels(net, gts))
    for x, r, a, s in zip(imgs, res.perturbations, res.adv_images, res.stats):
        assert r.abs().max() <= 3.0 + 1e-4 and a.min() >= 0 and a.max() <= 255
        torch.testing.assert_close(a, x + r)
        assert s['linf'] <= 3.0 + 1e-4
        # a budgeted attack runs every step: no early stop
        assert s['iters'] == 7 and s['status'] in ('max_iters', 'converged')
        assert len(s['trace']) == 8 and s['trace'][0] < 1.0 or s['trace'][0] == 1.0
    assert res.adv_labels is None
    assert attack.settings() == dict(type=type(attack).__name__, alpha=1.0, max_iters=7,
                                     stop_fraction=0.0, epsilon=3.0, quantize=False,
                                     clip_range=(0.0, 255.0), seed=0, random_start=True)


def test_quantized_images_stay_in_the_budget():
    net, imgs, gts = conv_problem(seed=4)
    imgs = [x.round() for x in imgs]
    res = PGD(epsilon=2.7, alpha=1.0, max_iters=5, quantize=True)(imgs, ConvPixels(net, gts))
    for x, r in zip(imgs, res.perturbations):
        a = x + r
        assert torch.equal(a, a.round()) and r.abs().max() <= 2.7


def test_an_images_start_and_result_do_not_depend_on_its_batch():
    net, imgs, gts = conv_problem(num_images=3, seed=5)
    attack = SegPGD(epsilon=4.0, alpha=1.0, max_iters=4, seed=9)
    both = attack(imgs, ConvPixels(net, gts), seeds=[11, 12, 13])
    alone = attack([imgs[1]], ConvPixels(net, [gts[1]]), seeds=[12])
    torch.testing.assert_close(both.perturbations[1], alone.perturbations[0])
    other = attack([imgs[1]], ConvPixels(net, [gts[1]]), seeds=[99])
    assert not torch.equal(other.perturbations[0], alone.perturbations[0])


def test_what_each_loss_weighs():
    logits = torch.tensor([[3.0, 0.0, 0.0], [0.0, 2.0, 0.0], [1.0, 1.0, 5.0]])
    labels = torch.tensor([0, 0, 2])
    t = TargetSet([labels], 3)
    ce = F.cross_entropy(logits, labels, reduction='none')
    # SegPGD: correct targets (0 and 2) weigh 1 - m/2T, the wrong one m/2T
    w = SegPGD(max_iters=10).weights(4, logits, labels, t)
    torch.testing.assert_close(w, torch.tensor([0.8, 0.2, 0.8]))
    assert torch.equal(PGD().weights(4, logits, labels, t), torch.ones(3))
    # CosPGD: cos(softmax, one-hot) = p_l / ||p||
    p = logits.softmax(1)
    want = p[torch.arange(3), labels] / p.norm(dim=1)
    torch.testing.assert_close(CosPGD().weights(0, logits, labels, t), want)
    torch.testing.assert_close(target_ce(logits, labels), ce)
    # a sigmoid head: per-class binary cross-entropy against the one-hot label
    bce = -(F.logsigmoid(logits[torch.arange(3), labels])
            + sum(F.logsigmoid(-logits[:, c]) * (labels != c) for c in range(3)))
    torch.testing.assert_close(target_ce(logits, labels, 'sigmoid'), bce)
    torch.testing.assert_close(target_probs(logits, 'sigmoid'), logits.sigmoid())
    with pytest.raises(ValueError, match='unknown activation'):
        target_ce(logits, labels, 'tanh')


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match='epsilon must be > 0'):
        PGD(epsilon=0)
    with pytest.raises(ValueError, match='alpha must be > 0'):
        CosPGD(alpha=-1)


def test_an_attack_that_leaves_its_budget_is_stopped_with_an_error():
    from mmdag.attacks.checks import BoundsError

    class Broken(PGD):
        def project(self, x0, x_next):   # forgets the epsilon ball
            return x_next.clamp(*self.clip_range) - x0

    net, imgs, gts = conv_problem(seed=6)
    with pytest.raises(BoundsError, match=r'Broken returned image 0 outside its bounds'):
        Broken(epsilon=2.0, alpha=1.0, max_iters=4)(imgs, ConvPixels(net, gts))
