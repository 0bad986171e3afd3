"""The base class of iterative dense attacks, through a toy subclass that is
not DAG: a signed-gradient step on the per-target cross-entropy, projected to
an epsilon ball (one-step FGSM when ``max_iters=1``), with an optional
random start. What the base owns (active set, statuses, trace, counts, the
final and the quantize check, the budget, best-so-far) must hold for it as
it holds for DAG, and the loss it attacks must be the subclass's."""
import pytest
import torch
import torch.nn.functional as F

from mmdag.attacks import DAG, AttackResult, IterativeAttack
from test_dag import LinearPixels, make_problem


class ToyPGD(IterativeAttack):
    """Signed-gradient ascent on the mean cross-entropy of the attacked targets."""

    def __init__(self, epsilon=4.0, alpha=1.0, max_iters=1, random_start=False, early_stop=True,
                 keep_best=False, **kwargs):
        super().__init__(max_iters=max_iters, epsilon=epsilon, **kwargs)
        self.alpha = alpha
        self.random_start = random_start
        self.early_stop = early_stop
        self.keep_best = keep_best

    def start(self, x0, mask, seed):
        if not self.random_start:
            return None
        g = torch.Generator().manual_seed(seed)
        r = (torch.rand(x0.shape, generator=g) * 2 - 1) * self.epsilon
        return self.project(x0, x0 + r)

    def loss(self, m, logits, labels, state, active, attacked):
        ce = F.cross_entropy(logits, labels, reduction='none')
        return (ce * attacked).sum() / attacked.sum().clamp_min(1)

    def update(self, m, x0, r, grads):
        return [self.project(x, x + d + self.alpha * g.sign()) for x, d, g in zip(x0, r, grads)]


def ce_grad(w, b, x, labels):
    x = x.clone().requires_grad_(True)
    z = torch.einsum('ck,kn->nc', w, x.flatten(1)) + b
    F.cross_entropy(z, labels).backward()
    return x.grad


def test_one_step_is_fgsm_on_the_subclass_loss():
    """The base hands the subclass the gradient of its own loss: one step is
    ``alpha * sign(grad CE)``, computed here independently."""
    w, b, imgs, labels = make_problem(num_images=2, seed=1)
    res = ToyPGD(epsilon=4.0, alpha=2.0, max_iters=1)(imgs, LinearPixels(w, b, labels))
    assert isinstance(res, AttackResult) and res.adv_labels is None
    for x, r, lab in zip(imgs, res.perturbations, labels):
        expected = (x + 2.0 * ce_grad(w, b, x, lab).sign()).clamp(0, 255) - x
        torch.testing.assert_close(r, expected)


def test_budget_range_and_steps_hold():
    w, b, imgs, labels = make_problem(num_images=3, seed=2)
    imgs[0] = imgs[0].clamp(max=254.0)
    imgs[0][0, 0, 0] = 254.0   # a pixel at the top of the range
    res = ToyPGD(epsilon=3.0, alpha=1.0, max_iters=6, early_stop=False)(
        imgs, LinearPixels(w, b, labels))
    for x, r, a, s in zip(imgs, res.perturbations, res.adv_images, res.stats):
        assert r.abs().max() <= 3.0 + 1e-4
        assert a.min() >= 0 and a.max() <= 255
        torch.testing.assert_close(a, x + r)
        # no early stop: every image runs max_iters updates and a last check
        assert s['iters'] == 6 and s['forwards'] == 7 and s['backwards'] == 6
        assert s['status'] in ('max_iters', 'converged') and len(s['trace']) == 7
        assert s['trace'][0] == 1.0
        assert s['correct_frac'] == pytest.approx(s['trace'][-1], abs=1e-6)


def test_early_stop_is_the_bases_rule_for_every_attack():
    # a problem where the signed steps flip every target (on others the
    # linear classes' regions hold the whole range)
    w, b, imgs, labels = make_problem(num_images=2, size=5, num_classes=5, seed=7)
    res = ToyPGD(epsilon=255.0, alpha=20.0, max_iters=30)(imgs, LinearPixels(w, b, labels))
    for s in res.stats:
        assert s['status'] == 'converged' and s['correct_frac'] == 0.0
        assert s['iters'] < 30 and s['forwards'] == s['iters'] + 1
        assert s['trace'][-1] == 0.0 and min(s['trace'][:-1]) > 0


def test_random_start_is_seeded_per_image_and_the_clean_check_counts():
    w, b, imgs, labels = make_problem(num_images=3, seed=4)
    attack = ToyPGD(epsilon=4.0, alpha=1.0, max_iters=0, random_start=True, seed=5)
    t = LinearPixels(w, b, labels)
    res = attack(imgs, t, seeds=[7, 8, 9])
    # the targets are chosen on the clean image: its forward comes first
    assert all(torch.equal(a, c) for a, c in zip(t.calls[0][1], imgs))
    for s in res.stats:
        assert s['forwards'] == 2 and s['iters'] == 0
        assert s['num_correct'] == s['num_targets']   # labels are the clean prediction
    # the same image with the same seed gets the same start wherever it sits
    rev = attack(imgs[::-1], LinearPixels(w, b, labels[::-1]), seeds=[9, 8, 7])
    for r, q in zip(res.perturbations, rev.perturbations[::-1]):
        assert torch.equal(r, q)
    assert not torch.equal(res.perturbations[0], res.perturbations[1])
    assert all(r.abs().max() <= 4.0 for r in res.perturbations)


class Scripted(LinearPixels):
    """Correctness scripted by the check's number: at check ``m`` the first
    ``still[m]`` targets of every image are correct, the others wrong."""

    def __init__(self, w, b, labels, still):
        super().__init__(w, b, labels)
        self.still, self.m = still, 0

    def logits(self, images, indices):
        out = super().logits(images, indices)
        k = self.still[min(self.m, len(self.still) - 1)]
        self.m += 1
        res = []
        for z, i in zip(out, indices):
            wrong = torch.zeros_like(z)
            wrong[k:, :] = -1e4 * F.one_hot(self.labels[i][k:], z.shape[1])
            res.append(z + wrong)
        return res


def test_best_so_far_returns_the_check_with_fewest_still_correct():
    w, b, imgs, labels = make_problem(num_images=1, size=4, seed=5)
    n = labels[0].numel()
    still = [n, n - 4, n - 10, n - 6, n - 2]   # the best check is the third (m = 2)
    seen = []

    class Recording(ToyPGD):
        def update(self, m, x0, r, grads):
            seen.append(r[0].clone())
            return super().update(m, x0, r, grads)

    res = Recording(epsilon=50.0, alpha=1.0, max_iters=4, early_stop=False, keep_best=True)(
        imgs, Scripted(w, b, labels, still))
    s = res.stats[0]
    assert s['trace'] == [round(k / n, 6) for k in still]
    assert s['correct_frac'] == pytest.approx((n - 10) / n)
    assert torch.equal(res.perturbations[0], seen[2])   # r as it was at the check m = 2
    assert s['status'] == 'max_iters'


def test_dag_settings_are_its_arguments_in_their_order():
    """The report and a resumed run's check hold DAG's settings as they were
    before the base class (no ``type`` key: a run of an earlier version
    resumes); another attack's carry its registered type."""
    d = DAG(gamma=0.3, max_iters=7, epsilon=2.0, seed=4)
    assert list(d.settings()) == ['gamma', 'max_iters', 'adv_labels', 'target_class',
                                  'exclude_classes', 'stop_fraction', 'epsilon', 'quantize',
                                  'clip_range', 'seed']
    assert d.settings()['gamma'] == 0.3 and d.settings()['epsilon'] == 2.0
    toy = ToyPGD(epsilon=2.0).settings()
    assert toy['type'] == 'ToyPGD' and toy['epsilon'] == 2.0 and toy['alpha'] == 1.0


def test_non_finite_and_empty_images_for_any_attack():
    w, b, imgs, labels = make_problem(num_images=2, seed=6)
    labels[1] = labels[1][:0]

    class NaNs(LinearPixels):
        def logits(self, images, indices):
            return [z * float('nan') if i == 0 else z
                    for z, i in zip(super().logits(images, indices), indices)]

    res = ToyPGD(max_iters=3)(imgs, NaNs(w, b, labels))
    assert res.stats[0]['status'] == 'non_finite' and res.stats[0]['iters'] == 0
    assert res.stats[1]['status'] == 'no_targets' and res.stats[1]['forwards'] == 0
    assert all(torch.equal(r, torch.zeros_like(r)) for r in res.perturbations)
