"""An epsilon sweep: at each epsilon the image a run at that epsilon alone
gives (same targets, same per-image seeds, the clean forward shared); every
epsilon's perturbation inside its own budget; the worst case at or below its
members at every epsilon; what cannot be swept refused in one line; the
step scaled with the budget where the config gives none, kept where it
does."""
import pytest
import torch

from mmdag.attacks import PGD, EpsilonSweep, WorstCase, build_attack, build_sweep
from mmdag.attacks.det_pgd import DetPGD
from mmdag.attacks.sweep import scaled_alpha, sweep_config
from mmdag.errors import MMDagError
from test_budgeted import ConvPixels, conv_problem

EPSILONS = [1.0, 3.0, 8.0]


class Counting(ConvPixels):
    """ConvPixels that counts the images it forwards."""

    def __init__(self, net, gts):
        super().__init__(net, gts)
        self.forwarded = 0

    def logits(self, images, indices):
        self.forwarded += len(images)
        return super().logits(images, indices)


@pytest.mark.parametrize('cfg', [dict(type='PGD', alpha=1.0, max_iters=3),
                                 dict(type='APGD', max_iters=4),
                                 dict(type='DAG', gamma=0.5, max_iters=3),
                                 dict(type='WorstCase', attacks=['pgd', 'cospgd'], max_iters=2)])
def test_each_epsilon_equals_a_run_at_that_epsilon_alone(cfg):
    net, imgs, gts = conv_problem(num_images=2, seed=5)
    sweep = build_sweep(cfg, [8, 1, 3])           # any order: sorted
    assert sweep.epsilons == EPSILONS and sweep.epsilon == 8.0
    targets = Counting(net, gts)
    res = sweep(imgs, targets, seeds=[21, 22])
    sweep_forwards = targets.forwarded
    assert list(res.sweep) == EPSILONS
    # the result itself is the largest epsilon's
    assert res.perturbations is res.sweep[8.0].perturbations
    alone_forwards = 0
    for e in EPSILONS:
        single = Counting(net, gts)
        # the step of each epsilon is the sweep's (sweep_config: scaled to
        # the budget where cfg gives no alpha)
        alone = build_attack(sweep_config(cfg, e))(imgs, single, seeds=[21, 22])
        alone_forwards += single.forwarded
        got = res.sweep[e]
        for a, b in zip(alone.perturbations, got.perturbations):
            assert torch.equal(a, b), e
            assert float(b.abs().max()) <= e + 1e-4
        for sa, sb in zip(alone.stats, got.stats):
            assert sa['correct_frac'] == sb['correct_frac']
    random_start = cfg['type'] != 'DAG'
    # the clean forward of the random starts is made once for the whole sweep
    assert sweep_forwards == alone_forwards - random_start * (len(EPSILONS) - 1) * len(imgs)
    # and counted once, in the smallest epsilon's statistics
    assert sum(s['forwards'] for r in res.sweep.values() for s in r.stats) == sweep_forwards


def test_the_worst_case_is_at_or_below_its_members_at_every_epsilon():
    net, imgs, gts = conv_problem(num_images=3, seed=6)
    res = build_sweep(dict(type='WorstCase', attacks=['pgd', 'segpgd', 'cospgd'], max_iters=3),
                      EPSILONS)(imgs, ConvPixels(net, gts), seeds=[1, 2, 3])
    for e, r in res.sweep.items():
        for s in r.stats:
            assert s['accuracy'] == min(s['members_accuracy'].values()), e
    # a larger budget is no weaker here, per image (not a law of sign attacks: a fact of
    # this toy, which the test would report if an epsilon were mixed up)
    fracs = [[s['accuracy'] for s in res.sweep[e].stats] for e in EPSILONS]
    assert fracs[0] != fracs[-1]


def test_what_cannot_be_swept_is_refused():
    with pytest.raises(MMDagError, match='epsilons'):
        build_sweep(dict(type='PGD'), [])
    with pytest.raises(MMDagError, match='> 0'):
        build_sweep(dict(type='PGD'), [0, 1])
    with pytest.raises(MMDagError, match='numbers'):
        build_sweep(dict(type='PGD'), ['a'])
    # a member that sets its own budget would not follow the sweep
    with pytest.raises(MMDagError, match='must not set their own epsilon'):
        build_sweep(dict(type='WorstCase', attacks=[dict(type='PGD', epsilon=2)]), [1, 4])
    with pytest.raises(ValueError, match='budget'):
        EpsilonSweep([(1.0, build_attack(dict(type='PGD', epsilon=2.0)))])


def test_worst_case_budget_is_its_members_shared_one():
    assert WorstCase(['pgd', 'segpgd'], epsilon=3).epsilon == 3.0
    assert WorstCase([dict(type='PGD', epsilon=2), dict(type='SegPGD', epsilon=3)]).epsilon is None


def test_the_step_scales_with_the_budget_unless_given():
    # the authors' ratio at their budget: the attack's defaults
    def scaled(e, cls=PGD):
        return cls().alpha * e / cls().epsilon

    for e in (0.25, 1.0, 8.0):
        assert sweep_config(dict(type='PGD'), e) == dict(type='PGD', epsilon=e, alpha=scaled(e))
        assert build_attack(sweep_config(dict(type='SegPGD'), e)).alpha == scaled(e)
    assert sweep_config(dict(type='PGD'), PGD().epsilon)['alpha'] == PGD().alpha
    # SemSegBench's 2.55 at 8: 0.08 at 0.25, under that budget
    assert round(scaled_alpha('pgd', 0.25), 2) == 0.08 < 0.25
    assert scaled_alpha(DetPGD, 4.0) == scaled(4.0, DetPGD)
    # a given step is kept at every epsilon
    assert sweep_config(dict(type='PGD', alpha=1.0), 0.25)['alpha'] == 1.0
    # an attack without a step is built as it is
    assert 'alpha' not in sweep_config(dict(type='DAG', gamma=0.5), 2.0)
    assert 'alpha' not in sweep_config(dict(type='APGD'), 2.0)
    # a worst case's members, each by its own defaults, a given step kept
    cfg = sweep_config(dict(type='WorstCase', attacks=['pgd', dict(type='DetPGD'),
                                                       dict(type='CosPGD', alpha=0.5), 'dag']),
                       2.0)
    pgd, det, cos, dag = WorstCase(**{k: v for k, v in cfg.items() if k != 'type'}).attacks
    assert (pgd.alpha, det.alpha, cos.alpha) == (scaled(2.0), scaled(2.0, DetPGD), 0.5)
    assert pgd.epsilon == det.epsilon == cos.epsilon == dag.epsilon == 2.0
    # a sweep of these says its step at each epsilon
    sweep = EpsilonSweep([(e, build_attack(sweep_config(dict(type='PGD'), e)))
                          for e in (0.25, 8.0)])
    assert sweep.settings()['alphas'] == [scaled(0.25), PGD().alpha]
