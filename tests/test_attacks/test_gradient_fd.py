"""The gradient a budgeted attack follows is the gradient of its loss with
respect to the 0..255 image the data preprocessor receives (normalisation
inside the graph), checked against central finite differences on the demo
FCN (briefly trained), for each attack's first step. The differences are
taken on a float64 copy of the model (tests/numerics.py says why)."""
import pytest
import torch
import torch.nn.functional as F

from mmdag.attacks import APGD, PGD, CosPGD, SegPGD
from mmdag.targets import SegmentationTargets
from numerics import assert_matches_central_differences, float64_targets
from test_segmentation import TINY, build, make_batch


def first_gradient(attack, images, targets):
    """The gradient the attack's first step receives (image 0)."""
    seen = []
    step = attack.step

    def spy(m, x0, r, grads, states):
        if m == 0:
            seen.append(grads[0].clone())
        return step(m, x0, r, grads, states)

    attack.step = spy
    attack(images, targets)
    return seen[0]


@pytest.mark.parametrize('make', [lambda: PGD(max_iters=1, random_start=False),
                                  lambda: SegPGD(max_iters=1, random_start=False),
                                  lambda: CosPGD(max_iters=1, random_start=False),
                                  lambda: APGD(max_iters=4, loss='js', random_start=False)],
                         ids=['pgd', 'segpgd', 'cospgd', 'apgd-js'])
def test_first_gradient_matches_finite_differences(make, trained_seg_checkpoint):
    model = build(TINY)
    # briefly trained: a random-weight model's logits hardly depend on the image
    ck = torch.load(trained_seg_checkpoint, map_location='cpu', weights_only=False)
    model.load_state_dict(ck['state_dict'])
    batch = make_batch(num=1, h=40, w=56, seed=2)
    x = batch['inputs'][0].float()
    targets = SegmentationTargets(model, [x], batch['data_samples'])
    attack = make()
    g = first_gradient(attack, [x], targets)
    labels = targets.labels[0]
    targets64 = float64_targets(targets)

    with torch.no_grad():   # what the attack's loss detaches, frozen at x
        z0 = targets.logits([x], [0])[0]
        ok0 = targets.correct(z0, labels)
        w0 = attack.weights(0, z0, labels, targets).double() if hasattr(attack, 'weights') \
            else None

    def loss(img):
        """The attack's loss at ``img`` with its detached factors (SegPGD's
        and CosPGD's weights, the masks) held at their values at ``x``, as
        the gradient sees them; computed in float64 (a float64 copy of the
        model), so that its rounding stays far below the differences
        measured."""
        with torch.no_grad():
            z = targets64.logits([img], [0])[0]
            if w0 is not None:
                return float((w0 * F.cross_entropy(z, labels, reduction='none')).sum()
                             / labels.numel())
            state = attack.init_image(0, labels, targets, z0, ok0)[1]
            return float(attack.loss(0, z, labels, state, ok0, ok0))

    assert_matches_central_differences(g, x, loss)


def test_budgeted_attacks_through_the_python_api():
    """``attack_batch`` builds any registered attack from its dict, on a
    mixed batch of a zoo-shaped segmentor: the budget holds per image."""
    from mmdag.apis import attack_batch
    model = build(TINY)
    batch = make_batch(num=2, h=40, w=56, seed=3)
    for cfg in (dict(type='SegPGD', epsilon=2.0, max_iters=2),
                dict(type='WorstCase', attacks=['pgd', 'apgd'], epsilon=2.0, max_iters=4)):
        result, targets = attack_batch(model, batch, cfg)
        assert len(result.adv_images) == 2 and result.adv_labels is None
        for x, adv, s in zip(batch['inputs'], result.adv_images, result.stats):
            assert (adv - x.float().to(adv.device)).abs().max() <= 2.0 + 1e-3
            assert s['num_targets'] == targets.labels[result.stats.index(s)].numel()


def test_vanishing_first_gradient_matches_finite_differences():
    """Vanishing on the matched targets of a two-stage detector (Faster R-CNN, random weights,
    its proposals fixed by the targets): the gradient of the background
    cross-entropy through the data preprocessor, the backbone and RoIAlign,
    against central differences in float64, pixel by pixel (in float32, the
    difference at a pixel whose gradient is 1e-7 is rounding noise: it
    failed on other CPUs)."""
    from mmdag.attacks.matched import MatchedVanishing, vanishing_loss
    from mmdag.engine.step import attack_mode
    from mmdag.targets import TwoStageTargets
    from test_two_stage import TARGETS
    from test_two_stage import build as build_det
    from test_two_stage import make_batch as det_batch
    model = build_det('faster_fpn')
    batch = det_batch(num=1, seed=4)
    x = batch['inputs'][0].float()
    with attack_mode(model):
        targets = TwoStageTargets(model, [x], batch['data_samples'], **TARGETS)
        attack = MatchedVanishing(max_iters=1, random_start=False)
        g = first_gradient(attack, [x], targets)
        n = targets.labels[0].numel()
        targets64 = float64_targets(targets)

        def loss(img):   # the attack's loss, in float64
            with torch.no_grad():
                z = targets64.logits([img], [0])[0]
                return float(-vanishing_loss(z, targets).sum() / n)

        assert_matches_central_differences(g, x, loss)
