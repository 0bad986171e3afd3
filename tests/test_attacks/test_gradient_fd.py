"""The gradient a budgeted attack follows is the gradient of its loss with
respect to the 0..255 image the data preprocessor receives (normalisation
inside the graph), checked against central finite differences on the demo
FCN (briefly trained), for each attack's first step."""
import pytest
import torch
import torch.nn.functional as F
from test_segmentation import TINY, build, make_batch

from mmdag.attacks import APGD, PGD, CosPGD, SegPGD
from mmdag.targets import SegmentationTargets


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


def assert_matches_central_differences(g, x, loss):
    """``g`` is the gradient of ``loss`` at ``x``: central differences pixel
    by pixel (h = 0.5 on 0..255), at the pixels of the largest gradients and
    at a few others, within 2%. A direction over the whole image is no
    check: its thousands of steps cross ReLU kinks, and its difference
    quotient drifts by several percent with h."""
    flat = g.abs().flatten()
    picks = flat.topk(4).indices.tolist() + [7, 1234, 4321]
    h, scale = 0.5, float(flat.max())
    assert scale > 0
    for k in picks:
        e = torch.zeros(x.numel())
        e[k] = h
        e = e.view_as(x)
        fd = (loss(x + e) - loss(x - e)) / (2 * h)
        assert fd == pytest.approx(float(g.flatten()[k]), rel=0.02, abs=1e-3 * scale), k


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

    with torch.no_grad():   # what the attack's loss detaches, frozen at x
        z0 = targets.logits([x], [0])[0]
        ok0 = targets.correct(z0, labels)
        w0 = attack.weights(0, z0, labels, targets).double() if hasattr(attack, 'weights') \
            else None

    def loss(img):
        """The attack's loss at ``img`` with its detached factors (SegPGD's
        and CosPGD's weights, the masks) held at their values at ``x``, as
        the gradient sees them; summed in float64, so that its rounding stays
        far below the differences measured (the model computes in float32)."""
        with torch.no_grad():
            z = targets.logits([img], [0])[0].double()
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


def test_tog_first_gradient_matches_finite_differences():
    """TOG vanishing on a two-stage detector (Faster R-CNN, random weights,
    its proposals fixed by the targets): the gradient of the background
    cross-entropy through the data preprocessor, the backbone and RoIAlign,
    against central differences, pixel by pixel."""
    from test_two_stage import TARGETS
    from test_two_stage import build as build_det
    from test_two_stage import make_batch as det_batch

    from mmdag.attacks import TOGVanishing
    from mmdag.attacks.tog import vanishing_loss
    from mmdag.engine.step import attack_mode
    from mmdag.targets import TwoStageTargets
    model = build_det('faster_fpn')
    batch = det_batch(num=1, seed=4)
    x = batch['inputs'][0].float()
    with attack_mode(model):
        targets = TwoStageTargets(model, [x], batch['data_samples'], **TARGETS)
        attack = TOGVanishing(max_iters=1, random_start=False)
        g = first_gradient(attack, [x], targets)
        n = targets.labels[0].numel()

        def loss(img):   # the attack's loss, summed in float64
            with torch.no_grad():
                z = targets.logits([img], [0])[0].double()
                return float(-vanishing_loss(z, targets).sum() / n)

        assert_matches_central_differences(g, x, loss)
