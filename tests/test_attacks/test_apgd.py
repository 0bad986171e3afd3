"""APGD with SEA's losses and schedule: the same adversarial images as the
authors' code (transcribed in reference_apgd.py) from the same start, on a
small convolutional toy; the budget; the stages' bookkeeping."""
import pytest
import torch

from mmdag.attacks import APGD
from reference_apgd import apgd_largereps
from test_budgeted import ConvPixels, conv_problem


def problem(seed, num_images=2):
    net, imgs, gts = conv_problem(num_images=num_images, seed=seed)
    # no ignored pixels: the authors' first check counts them otherwise than
    # every later one (reference_apgd.py), a difference by design
    gts = [torch.where(g == 255, torch.zeros_like(g), g) for g in gts]
    return net, imgs, gts


@pytest.mark.parametrize('loss,iters', [('mask-ce', 20), ('mask-ce', 40), ('js', 20),
                                        ('mask-ce-bal', 20)])
def test_the_same_images_as_the_authors_code(loss, iters):
    net, imgs, gts = problem(seed=7)
    targets = ConvPixels(net, gts)
    weights = [0.5, 1.0, 2.0, 1.5, 0.7] if loss == 'mask-ce-bal' else None
    attack = APGD(epsilon=4.0, max_iters=iters, loss=loss, class_weights=weights, seed=3)
    res = attack(imgs, targets)
    x0 = torch.stack(imgs) / 255
    start = torch.stack([x + attack.start(x, None, attack.seed * 1_000_003 + i)
                         for i, x in enumerate(imgs)]) / 255
    ref = apgd_largereps(lambda x: targets.maps(x * 255), x0, torch.stack(gts), 4.0 / 255,
                         iters, {'mask-ce': 'mask-ce-avg', 'js': 'js-avg',
                                 'mask-ce-bal': 'mask-ce-bal'}[loss], start,
                         weights=None if weights is None else torch.tensor(weights))
    got = torch.stack(res.adv_images) / 255
    assert (got - ref).abs().max() < 1e-5, (got - ref).abs().max()
    for s in res.stats:
        assert s['linf'] <= 4.0 + 1e-4
        assert s['iters'] == iters + 2 and s['backwards'] == iters + 2
    assert all(s['correct_frac'] < 1 for s in res.stats)


def test_settings_and_refusals():
    a = APGD(epsilon=2.0, max_iters=10)
    assert a.settings() == dict(type='APGD', epsilon=2.0, max_iters=10, loss='mask-ce',
                                class_weights=None, random_start=True, quantize=False,
                                clip_range=(0.0, 255.0), seed=0)
    with pytest.raises(ValueError, match='needs class_weights'):
        APGD(loss='mask-ce-bal')
    with pytest.raises(ValueError, match='unknown APGD loss'):
        APGD(loss='ce')
    with pytest.raises(ValueError, match='max_iters >= 4'):
        APGD(max_iters=3)


def test_the_returned_point_is_the_last_stages_with_fewest_targets_correct():
    a = APGD(max_iters=20)   # stages of 6, 6, 8 steps; the last begins at check 14
    assert a._begin == [0, 7, 14] and a.max_iters == 22
    # the authors' accuracy counts every target (not only those the clean image got right)
    assert a.best_score(14, 3, 5) == 5 and a.best_score(13, 3, 5) is None
    assert a.best_restarts(14) and not a.best_restarts(15)
