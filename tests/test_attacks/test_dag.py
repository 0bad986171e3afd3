"""DAG on a per-pixel linear classifier, where every step can be checked by hand."""
import pytest
import torch

from mmdag.attacks import DAG, TargetSet, permute_perturbation, perturbation_stats


class LinearPixels(TargetSet):
    """logits[n, c] = W[c] . x[:, n] + b[c] for every pixel n: gradients are exact."""

    def __init__(self, weight, bias, labels):
        super().__init__(labels, weight.shape[0])
        self.weight, self.bias = weight, bias
        self.calls = []  # (indices, detached images) of every forward

    def logits(self, images, indices):
        self.calls.append((list(indices), [x.detach().clone() for x in images]))
        return [torch.einsum('ck,kn->nc', self.weight, x.flatten(1)) + self.bias for x in images]


def make_problem(num_images=2, size=6, num_classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    weight = torch.randn(num_classes, 3, generator=g)
    bias = torch.randn(num_classes, generator=g)
    images = [torch.rand(3, size, size, generator=g) * 100 + 80 for _ in range(num_images)]
    # true labels = clean prediction, so every target starts active
    labels = [(torch.einsum('ck,kn->nc', weight, x.flatten(1)) + bias).argmax(1) for x in images]
    return weight, bias, images, labels


def test_first_step_has_linf_gamma_and_follows_eq1():
    w, b, imgs, labels = make_problem(num_images=1)
    t = LinearPixels(w, b, labels)
    res = DAG(gamma=0.5, max_iters=1, seed=3)(imgs, t)
    r = res.perturbations[0]
    assert r.abs().max().item() == pytest.approx(0.5, abs=1e-5)
    # direction: sum over active targets of W[l'] - W[l], per pixel
    adv = res.adv_labels[0]
    expect = (w[adv] - w[labels[0]]).T.reshape(r.shape)
    expect = expect * 0.5 / expect.abs().max()
    assert torch.allclose(r, expect, atol=1e-5)


def test_every_step_has_linf_gamma_and_only_active_targets_move():
    w, b, imgs, labels = make_problem(num_images=1, size=8)
    t = LinearPixels(w, b, labels)
    res = DAG(gamma=2.0, max_iters=40, seed=1)(imgs, t)
    xs = [c[1][0] for c in t.calls]
    assert len(xs) >= 3
    steps_with_flipped = 0
    for m in range(len(xs) - 1):
        step = xs[m + 1] - xs[m]
        assert step.abs().max().item() == pytest.approx(2.0, abs=1e-4)
        z = torch.einsum('ck,kn->nc', w, xs[m].flatten(1)) + b
        inactive = z.argmax(1) != labels[0]
        if inactive.any() and not inactive.all():
            steps_with_flipped += 1
            # a linear per-pixel model: a flipped pixel gets exactly zero gradient
            assert step.flatten(1)[:, inactive].abs().max().item() == 0
    assert steps_with_flipped >= 2, 'the test needs steps where some targets already flipped'
    assert res.stats[0]['iters'] == len(xs) - 1


def test_early_stop_when_no_target_is_correct():
    w, b, imgs, labels = make_problem(num_images=1, size=4)
    t = LinearPixels(w, b, labels)
    res = DAG(gamma=2.0, max_iters=500)(imgs, t)
    s = res.stats[0]
    assert s['status'] == 'converged' and s['converged']
    assert 0 < s['iters'] < 500
    assert s['correct_frac'] == 0
    # the last forward saw no correct target, and no update followed it
    assert len(t.calls) == s['iters'] + 1
    z = torch.einsum('ck,kn->nc', w, res.adv_images[0].flatten(1)) + b
    assert (z.argmax(1) != labels[0]).all()


def test_max_iters_bounds_the_updates():
    w, b, imgs, labels = make_problem(num_images=1, size=8)
    t = LinearPixels(w, b, labels)
    res = DAG(gamma=0.01, max_iters=3)(imgs, t)
    assert res.stats[0]['status'] == 'max_iters'
    assert res.stats[0]['iters'] == 3
    assert res.stats[0]['correct_frac'] > 0


def test_images_in_a_batch_are_independent_and_stopped_ones_are_not_forwarded():
    w, b, imgs, labels = make_problem(num_images=3, size=6)
    seeds = [11, 22, 33]
    batch = DAG(gamma=0.5, max_iters=400, seed=5)
    t = LinearPixels(w, b, labels)
    res = batch(imgs, t, seeds=seeds)
    for i in range(3):
        alone = DAG(gamma=0.5, max_iters=400, seed=5)(
            [imgs[i]], LinearPixels(w, b, [labels[i]]), seeds=[seeds[i]])
        assert torch.allclose(res.perturbations[i], alone.perturbations[0], atol=1e-4)
        assert res.stats[i]['iters'] == alone.stats[0]['iters']
    # an image appears in the forwards exactly iters + 1 times
    for i in range(3):
        n = sum(i in idx for idx, _ in t.calls)
        assert n == res.stats[i]['iters'] + 1
    stop_iters = {s['iters'] for s in res.stats}
    assert len(stop_iters) > 1, 'the test needs images that stop at different times'


def test_trace_and_pass_counts_follow_the_loop():
    w, b, imgs, labels = make_problem(num_images=3, size=6)
    t = LinearPixels(w, b, labels)
    res = DAG(gamma=0.5, max_iters=400, seed=5)(imgs, t, seeds=[11, 22, 33])
    for i, s in enumerate(res.stats):
        # one value per check: the clean image (all attacked targets correct) to the last
        assert len(s['trace']) == s['iters'] + 1 == s['forwards']
        assert s['forwards'] == sum(i in idx for idx, _ in t.calls)
        assert s['backwards'] == s['iters']      # one backward per update
        assert s['trace'][0] == 1.0 and s['trace'][-1] == s['correct_frac'] == 0.0
        assert all(0.0 <= f <= 1.0 for f in s['trace'])
    # cut short by max_iters: the check after the last update is the last value
    s = DAG(gamma=0.01, max_iters=3)(imgs[:1], LinearPixels(w, b, labels[:1])).stats[0]
    assert s['status'] == 'max_iters' and len(s['trace']) == 4 and s['backwards'] == 3
    assert s['trace'][-1] == pytest.approx(s['correct_frac'], abs=1e-6)
    assert s['correct_frac'] > 0


def test_determinism_under_seed():
    w, b, imgs, labels = make_problem(num_images=2)
    r1 = DAG(max_iters=5, seed=7)(imgs, LinearPixels(w, b, labels), seeds=[1, 2])
    r2 = DAG(max_iters=5, seed=7)(imgs, LinearPixels(w, b, labels), seeds=[1, 2])
    r3 = DAG(max_iters=5, seed=8)(imgs, LinearPixels(w, b, labels), seeds=[1, 2])
    for a, c in zip(r1.perturbations, r2.perturbations):
        assert torch.equal(a, c)
    assert not all(torch.equal(a, c) for a, c in zip(r1.adv_labels, r3.adv_labels))


def test_clipping_keeps_the_valid_range_and_epsilon_bounds_r():
    w, b, imgs, labels = make_problem(num_images=1)
    bright = [torch.full_like(imgs[0], 254.8)]
    lab = [(torch.einsum('ck,kn->nc', w, bright[0].flatten(1)) + b).argmax(1)]
    res = DAG(gamma=3.0, max_iters=20)(bright, LinearPixels(w, b, lab))
    x = res.adv_images[0]
    assert x.max() <= 255 and x.min() >= 0
    res = DAG(gamma=1.0, max_iters=50, epsilon=2.0)(imgs, LinearPixels(w, b, labels))
    assert res.stats[0]['linf'] <= 2.0 + 1e-6
    assert res.stats[0]['iters'] > 2


def test_quantize_returns_integer_images_and_rechecks():
    w, b, imgs, labels = make_problem(num_images=1)
    imgs = [x.round() for x in imgs]
    t = LinearPixels(w, b, labels)
    res = DAG(gamma=0.5, max_iters=4, quantize=True)(imgs, t)
    x = res.adv_images[0]
    assert torch.equal(x, x.round())
    # a forward per update, the final check, and the re-check after rounding
    assert len(t.calls) == res.stats[0]['iters'] + 2
    z = torch.einsum('ck,kn->nc', w, x.flatten(1)) + b
    correct_frac = (z.argmax(1) == labels[0]).float().mean().item()
    assert res.stats[0]['correct_frac'] == pytest.approx(correct_frac)


@pytest.mark.parametrize('epsilon', [2.7, 0.6, 3.5])
def test_quantize_keeps_the_epsilon_ball(epsilon):
    # an epsilon with a fraction >= .5: rounding X + r alone may leave the ball
    w, b, imgs, labels = make_problem(num_images=2, size=8)
    imgs = [x.round() for x in imgs]
    res = DAG(gamma=1.0, max_iters=30, epsilon=epsilon, quantize=True)(
        imgs, LinearPixels(w, b, labels))
    for x0, x, r, s in zip(imgs, res.adv_images, res.perturbations, res.stats):
        assert torch.equal(x, x.round()) and torch.equal(x, x0 + r)
        assert r.abs().max().item() <= epsilon and s['linf'] <= epsilon
        assert s['linf'] == int(epsilon)      # the attack used the whole (integer) ball
        assert x.min() >= 0 and x.max() <= 255


def test_zero_gradient_and_no_target_images_stop_cleanly():
    w = torch.ones(3, 3)
    b = torch.tensor([1.0, 0.0, 0.0])
    img = [torch.full((3, 4, 4), 100.0), torch.full((3, 4, 4), 100.0)]
    labels = [torch.zeros(16, dtype=torch.long), torch.zeros(0, dtype=torch.long)]
    res = DAG(max_iters=10)(img, LinearPixels(w, b, labels))
    assert res.stats[0]['status'] == 'zero_grad'
    assert res.stats[1]['status'] == 'no_targets'
    assert res.stats[1]['iters'] == 0 and torch.equal(res.adv_images[1], img[1])


def test_stop_fraction_stops_before_the_active_set_is_empty():
    w, b, imgs, labels = make_problem(num_images=1, size=10)
    full = DAG(gamma=0.5, max_iters=1000)(imgs, LinearPixels(w, b, labels))
    part = DAG(gamma=0.5, max_iters=1000, stop_fraction=0.3)(imgs, LinearPixels(w, b, labels))
    assert part.stats[0]['converged'] and full.stats[0]['converged']
    assert part.stats[0]['iters'] < full.stats[0]['iters']
    assert 0 < part.stats[0]['correct_frac'] <= 0.3


def test_perm_keeps_the_values_and_breaks_the_positions():
    g = torch.Generator().manual_seed(0)
    r = torch.randn(3, 16, 16, generator=g)
    q = permute_perturbation(r, torch.Generator().manual_seed(1))
    assert not torch.equal(q, r)
    # the multiset of pixel colour vectors is unchanged
    key = lambda t: sorted(map(tuple, t.flatten(1).T.tolist()))  # noqa: E731
    assert key(q) == key(r)
    assert perturbation_stats(q) == pytest.approx(perturbation_stats(r))
    q2 = permute_perturbation(r, torch.Generator().manual_seed(1))
    assert torch.equal(q, q2)


def test_perceptibility_formula():
    r = torch.zeros(3, 2, 2)
    r[:, 0, 0] = torch.tensor([255.0, 0.0, 0.0])   # one pixel, ||r_k|| = 1 on [0, 1]
    s = perturbation_stats(r)
    assert s['p'] == pytest.approx((1 / 4) ** 0.5)
    assert s['linf'] == pytest.approx(255.0)


@pytest.mark.parametrize('kwargs', [dict(gamma=0), dict(max_iters=-1), dict(adv_labels='nope'),
                                    dict(stop_fraction=1.0), dict(epsilon=0)])
def test_bad_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        DAG(**kwargs)


class NaNAfter(LinearPixels):
    """Finite logits for the first ``k`` forwards of image 0, NaN after."""

    def __init__(self, weight, bias, labels, k):
        super().__init__(weight, bias, labels)
        self.k, self.seen = k, 0

    def logits(self, images, indices):
        out = super().logits(images, indices)
        if 0 in indices:
            self.seen += 1
            if self.seen > self.k:
                j = list(indices).index(0)
                out[j] = out[j] * float('nan')
        return out


@pytest.mark.parametrize('k', [0, 3])
def test_non_finite_logits_are_never_counted_as_flipped(k):
    # argmax of NaN is index 0 for every target: without the check, targets
    # of another class would look flipped and the image converged
    w, b, imgs, labels = make_problem(num_images=2)
    res = DAG(gamma=0.5, max_iters=20)(imgs, NaNAfter(w, b, labels, k))
    s = res.stats[0]
    assert s['status'] == 'non_finite' and not s['converged']
    assert s['iters'] == k and s['correct_frac'] != s['correct_frac']   # NaN: unknown
    assert res.stats[1]['status'] != 'non_finite'   # its neighbour is unaffected
    from mmdag.evaluation import AttackMetric
    m = AttackMetric.__new__(AttackMetric)
    out = AttackMetric.compute_metrics(m, [dict(s), dict(res.stats[1])])
    assert out['non_finite'] == 1 and out['images'] == 2
    assert out['target_success'] == pytest.approx(1 - res.stats[1]['correct_frac'])


def test_quantize_rechecks_the_status():
    # converged in float, one target back after rounding: not a success
    w, b, imgs, labels = make_problem(num_images=1)
    imgs = [x.round() for x in imgs]
    t = LinearPixels(w, b, labels)
    res = DAG(gamma=0.5, max_iters=500)(imgs, t)
    assert res.stats[0]['status'] == 'converged'

    class RoundingUndoes(LinearPixels):
        def logits(self, images, indices):
            out = super().logits(images, indices)
            x = images[0]
            if not x.requires_grad and torch.equal(x, x.round()):   # the recheck
                z = out[0].clone()
                z[0, labels[0][0]] = z[0].max() + 1   # target 0 correct again
                out[0] = z
            return out

    res = DAG(gamma=0.5, max_iters=500, quantize=True)(imgs, RoundingUndoes(w, b, labels))
    s = res.stats[0]
    assert s['status'] == 'undone_by_rounding' and not s['converged']
    assert s['correct_frac'] >= 1 / len(labels[0])


def test_target_class_must_be_a_class_of_the_model():
    w, b, imgs, labels = make_problem(num_images=1, num_classes=4)
    with pytest.raises(ValueError, match='target_class 7 is out of range.*4 classes'):
        DAG(adv_labels='target', target_class=7)(imgs, LinearPixels(w, b, labels))
    res = DAG(adv_labels='target', target_class=3, max_iters=2)(imgs, LinearPixels(w, b, labels))
    assert res.stats[0]['iters'] >= 1


def test_only_targets_correct_on_the_clean_image_are_attacked_and_counted():
    w, b, imgs, labels = make_problem(num_images=2, num_classes=4)
    wrong = [lab.clone() for lab in labels]
    wrong[0][:5] = (wrong[0][:5] + 1) % 4          # 5 targets wrong on the clean image
    wrong[1] = (wrong[1] + 1) % 4                  # every target wrong
    res = DAG(gamma=0.5, max_iters=3)(imgs, LinearPixels(w, b, wrong))
    s0, s1 = res.stats
    assert s0['num_targets'] == len(wrong[0]) and s0['num_correct'] == len(wrong[0]) - 5
    assert (res.adv_labels[0][:5] == -1).all() and (res.adv_labels[0][5:] >= 0).all()
    z = torch.einsum('ck,kn->nc', w, res.adv_images[0].flatten(1)) + b
    still = (z.argmax(1) == wrong[0])[5:].float().mean().item()
    assert s0['correct_frac'] == pytest.approx(still)   # over the attacked targets only
    # nothing correct on the clean image: nothing flipped, not a success
    assert s1['status'] == 'none_correct' and not s1['converged'] and s1['iters'] == 0
    from mmdag.evaluation import AttackMetric
    out = AttackMetric.compute_metrics(AttackMetric.__new__(AttackMetric), [dict(s0), dict(s1)])
    assert out['none_correct'] == 1 and out['success'] == float(s0['converged'])


def test_padding_around_an_image_is_never_perturbed_nor_measured():
    # RTMDet / YOLOX pipelines pad the image to 640x640: only the image's
    # region (h, w) at the top left may move, and p counts its pixels only
    w, b, imgs, labels = make_problem(num_images=2, size=8)
    region = (5, 6)
    res = DAG(gamma=1.0, max_iters=6)(imgs, LinearPixels(w, b, labels), regions=[region, None])
    r = res.perturbations[0]
    assert r[:, 5:].abs().max() == 0 and r[:, :, 6:].abs().max() == 0
    assert r[:, :5, :6].abs().max() > 0 and res.stats[0]['iters'] > 0
    assert res.stats[0]['p'] == pytest.approx(perturbation_stats(r[:, :5, :6])['p'])
    assert res.stats[0]['p'] > perturbation_stats(r)['p']     # K = 30 pixels, not 64
    # the other image is attacked as without regions
    alone = DAG(gamma=1.0, max_iters=6)(imgs[1:], LinearPixels(w, b, labels[1:]), seeds=[1])
    assert torch.allclose(alone.perturbations[0], res.perturbations[1], atol=1e-5)


def test_perm_stays_inside_the_region_and_is_the_same_draw_for_a_whole_image():
    g = torch.Generator().manual_seed(0)
    r = torch.zeros(3, 6, 8)
    r[:, :4, :5] = torch.randn(3, 4, 5, generator=g)
    q = permute_perturbation(r, torch.Generator().manual_seed(1), (4, 5))
    assert q[:, 4:].abs().max() == 0 and q[:, :, 5:].abs().max() == 0
    assert sorted(q.flatten().tolist()) == sorted(r.flatten().tolist())
    full = permute_perturbation(r, torch.Generator().manual_seed(1))
    assert torch.equal(full, permute_perturbation(r, torch.Generator().manual_seed(1), (6, 8)))
