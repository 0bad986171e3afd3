"""WorstCase: per image (never per batch) the member whose image leaves the
fewest attacked targets correct; at or below every member on every image;
the winner named; the cost summed."""
import math

import pytest
import torch
from test_budgeted import ConvPixels, conv_problem

from mmdag.attacks import DAG, PGD, AttackResult, CosPGD, SegPGD, WorstCase


class Fixed:
    """A fake attack whose per-image outcome is given: image i gets
    ``r = value`` everywhere and ``correct_frac = fracs[i]``."""

    clip_range = (0.0, 255.0)
    seed = 0

    def __init__(self, value, fracs, name='Fixed'):
        self.value, self.fracs, self.name = value, fracs, name

    def settings(self):
        return dict(type=self.name, value=self.value)

    def __call__(self, images, targets, seeds=None, regions=None):
        r = [torch.full_like(x, self.value) for x in images]
        stats = [dict(correct_frac=f, forwards=2, backwards=1, status='max_iters')
                 for f in self.fracs]
        return AttackResult(adv_images=[x + d for x, d in zip(images, r)], perturbations=r,
                            stats=stats)


def test_the_worst_case_is_chosen_per_image():
    imgs = [torch.zeros(3, 2, 2) for _ in range(3)]
    a = Fixed(1.0, [0.5, 0.1, float('nan')], 'A')
    b = Fixed(2.0, [0.2, 0.3, 0.9], 'B')
    c = Fixed(3.0, [0.2, 0.1, 0.9], 'A')   # a second 'A': named A#2; ties go to the earlier
    res = WorstCase([a, b, c])(imgs, targets=None)
    assert [s['winner'] for s in res.stats] == ['B', 'A', 'B']
    assert [float(r[0, 0, 0]) for r in res.perturbations] == [2.0, 1.0, 2.0]
    # a non-finite outcome (no decision) never wins over a finite one
    assert res.stats[2]['members']['A'] != res.stats[2]['members']['A']   # nan
    assert res.stats[0]['members'] == {'A': 0.5, 'B': 0.2, 'A#2': 0.2}
    assert all(s['forwards'] == 6 and s['backwards'] == 3 for s in res.stats)
    assert res.adv_labels is None


def test_at_or_below_every_member_on_every_image():
    net, imgs, gts = conv_problem(num_images=3, seed=3)
    members = [PGD(epsilon=3.0, alpha=1.0, max_iters=3, seed=1),
               SegPGD(epsilon=3.0, alpha=1.0, max_iters=3, seed=2),
               CosPGD(epsilon=3.0, alpha=1.0, max_iters=3, seed=3)]
    ws = WorstCase(members, seed=4)
    res = ws(imgs, ConvPixels(net, gts), seeds=[10, 11, 12])
    # each member alone, with the per-image seeds the ensemble hands it
    alone = [m(imgs, ConvPixels(net, gts), seeds=[4 * 1_000_003 + s for s in (10, 11, 12)])
             for m in members]
    for i, s in enumerate(res.stats):
        fracs = [a.stats[i]['correct_frac'] for a in alone]
        assert s['correct_frac'] == min(fracs)
        k = fracs.index(min(fracs))
        assert s['winner'] == type(members[k]).__name__
        torch.testing.assert_close(res.adv_images[i], alone[k].adv_images[i])
        assert s['members'] == dict(PGD=fracs[0], SegPGD=fracs[1], CosPGD=fracs[2])
        assert s['linf'] <= 3.0 + 1e-4
        # the three random starts share one clean forward: two fewer than alone
        assert s['forwards'] == sum(a.stats[i]['forwards'] for a in alone) - 2
        assert s['backwards'] == sum(a.stats[i]['backwards'] for a in alone)
        # each member's own result goes with the ensemble's (the hook predicts it)
        for name, a in zip(('PGD', 'SegPGD', 'CosPGD'), alone):
            assert torch.equal(res.members[name].adv_images[i], a.adv_images[i])


def test_the_clean_forward_is_shared():
    net, imgs, gts = conv_problem(num_images=2, seed=5)
    targets = ConvPixels(net, gts)
    calls = []
    logits = targets.logits
    targets.logits = lambda xs, ids: calls.append(torch.is_grad_enabled()) or logits(xs, ids)
    members = [PGD(epsilon=2.0, alpha=1.0, max_iters=2),
               CosPGD(epsilon=2.0, alpha=1.0, max_iters=2),
               DAG(max_iters=2, epsilon=2.0)]
    WorstCase(members)(imgs, targets)
    # no-graph forwards: one shared clean check, and each member's last check
    assert calls.count(False) == 1 + 3
    # with graph: 2 steps of each member (DAG's zero start: its first is the clean image)
    assert calls.count(True) == 2 * 3


def test_members_by_name_with_a_shared_budget():
    ws = WorstCase(['pgd', 'DAG', dict(type='CosPGD', epsilon=2.0)], epsilon=4.0, max_iters=5)
    pgd, dag, cos = ws.attacks
    assert isinstance(pgd, PGD) and isinstance(dag, DAG) and isinstance(cos, CosPGD)
    assert (pgd.epsilon, dag.epsilon, cos.epsilon) == (4.0, 4.0, 2.0)
    assert pgd.max_iters == dag.max_iters == cos.max_iters == 5
    settings = ws.settings()
    assert settings['type'] == 'WorstCase'
    assert [a['type'] for a in settings['attacks']] == ['PGD', 'DAG', 'CosPGD']
    assert settings['attacks'][1]['epsilon'] == 4.0


def test_bad_ensembles_are_refused():
    with pytest.raises(ValueError, match='at least one attack'):
        WorstCase([])
    with pytest.raises(ValueError, match="unknown attack 'fgsm'"):
        WorstCase(['fgsm'])
    with pytest.raises(ValueError, match='share clip_range'):
        WorstCase([PGD(), PGD(clip_range=(0.0, 1.0))])
    assert math.isfinite(WorstCase('pgd').attacks[0].epsilon)
