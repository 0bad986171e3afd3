"""WorstCase: per image (never per batch) the member whose image leaves the
lowest accuracy over all targets (SEA's criterion; detectors: the fewest
attacked targets correct); at or below every member on every image; the
winner named; the cost summed; each member its own random start."""
import math

import pytest
import torch

from mmdag.attacks import DAG, PGD, AttackResult, CosPGD, SegPGD, WorstCase
from mmdag.attacks.targets import TargetSet
from mmdag.attacks.worst_case import member_seeds
from test_budgeted import ConvPixels, conv_problem


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
    res = WorstCase([a, b, c], criterion='attacked')(imgs, targets=None)
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
    targets = ConvPixels(net, gts)
    res = ws(imgs, targets, seeds=[10, 11, 12])
    # each member alone, with the per-image seeds the ensemble hands it (its
    # index in them)
    base = [4 * 1_000_003 + s for s in (10, 11, 12)]
    alone = [m(imgs, ConvPixels(net, gts), seeds=member_seeds(base, k))
             for k, m in enumerate(members)]
    for i, s in enumerate(res.stats):
        # SEA's criterion: accuracy over every labelled pixel of the member's image
        accs = []
        for a in alone:
            with torch.no_grad():
                z = targets.logits([a.adv_images[i]], [i])[0]
            accs.append(float((z.argmax(1) == targets.labels[i]).double().mean()))
        assert s['criterion'] == 'accuracy'
        assert s['accuracy'] == min(accs)
        k = accs.index(min(accs))
        assert s['winner'] == ('PGD', 'SegPGD', 'CosPGD')[k]
        torch.testing.assert_close(res.adv_images[i], alone[k].adv_images[i])
        fracs = [a.stats[i]['correct_frac'] for a in alone]
        assert s['members'] == dict(PGD=fracs[0], SegPGD=fracs[1], CosPGD=fracs[2])
        assert s['members_accuracy'] == dict(PGD=accs[0], SegPGD=accs[1], CosPGD=accs[2])
        assert s['linf'] <= 3.0 + 1e-4
        # the three random starts share one clean forward: two fewer than
        # alone; each member's accuracy takes one forward
        assert s['forwards'] == sum(a.stats[i]['forwards'] for a in alone) - 2 + 3
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
    # no-graph forwards: one shared clean check, each member's last check
    # and each member's accuracy (SEA's criterion)
    assert calls.count(False) == 1 + 3 + 3
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


class Lookup(TargetSet):
    """Four targets, labels ``[0, 0, 1, 1]``, whose classification is read
    from a table by the image's value: ``table[v][t]`` says whether target
    ``t`` is correct on an image filled with ``v``."""

    TABLE = {0: [1, 1, 0, 0],    # clean: targets 2 and 3 are wrong (not attacked)
             1: [0, 0, 1, 1],    # A: every attacked target flipped, 2 and 3 repaired
             2: [0, 1, 0, 0]}    # B: one attacked target left, 2 and 3 still wrong

    def __init__(self, num):
        super().__init__([torch.tensor([0, 0, 1, 1]) for _ in range(num)], 2)

    def logits(self, images, indices):
        out = []
        for x in images:
            ok = torch.tensor(self.TABLE[int(x.flatten()[0])], dtype=torch.bool)
            right = torch.nn.functional.one_hot(self.labels[0], 2).float()
            out.append(torch.where(ok[:, None], right, 1 - right))
        return out


class LookupDetector(Lookup):
    def detector_loss(self, images, indices, seeds, terms='all'):
        raise NotImplementedError


def test_the_criterion_is_accuracy_over_all_targets_not_the_attacked_ones():
    imgs = [torch.zeros(3, 2, 2)]
    a = Fixed(1.0, [0.0], 'A')    # leaves no attacked target correct
    b = Fixed(2.0, [0.5], 'B')    # leaves one of two
    targets = Lookup(1)
    accs = {}
    for name, value in (('A', 1), ('B', 2)):
        z = targets.logits([torch.full((3, 2, 2), float(value))], [0])[0]
        accs[name] = float(targets.correct(z, targets.labels[0]).double().mean())
    assert accs['A'] > accs['B']   # A repaired the clean-wrong targets
    # the attacked-targets criterion takes A, whose accuracy is the higher
    old = WorstCase([a, b], criterion='attacked')(imgs, targets).stats[0]
    assert old['winner'] == 'A' and old['criterion'] == 'attacked' and 'accuracy' not in old
    # SEA's takes B: the accuracy at or below each member's
    new = WorstCase([a, b])(imgs, targets).stats[0]
    assert new['winner'] == 'B' and new['criterion'] == 'accuracy'
    assert new['accuracy'] == accs['B'] == min(accs.values())
    assert new['members_accuracy'] == accs
    # a detector keeps its own choice (the attacked targets) unless told
    assert WorstCase([a, b])(imgs, LookupDetector(1)).stats[0]['winner'] == 'A'
    assert WorstCase([a, b], criterion='accuracy')(imgs, LookupDetector(1)).stats[0][
        'winner'] == 'B'
    with pytest.raises(ValueError, match='criterion'):
        WorstCase([a, b], criterion='miou')


def test_each_member_starts_from_its_own_random_point():
    net, imgs, gts = conv_problem(num_images=2, seed=7)
    imgs = [x.clamp(10, 245) for x in imgs]   # no start is cut by the valid range
    # max_iters=0: the perturbations are the random starts
    ws = WorstCase([PGD(epsilon=4.0, max_iters=0), CosPGD(epsilon=4.0, max_iters=0)])
    res = ws(imgs, ConvPixels(net, gts), seeds=[3, 4])
    for i in range(2):
        r0, r1 = (res.members[n].perturbations[i] for n in ('PGD', 'CosPGD'))
        assert float(r0.abs().max()) > 0 and bool((r0 != r1).all())
    # the first member's seeds are the attack's alone: its result unchanged
    alone = PGD(epsilon=4.0, max_iters=0)(imgs, ConvPixels(net, gts), seeds=[3, 4])
    for a, b in zip(alone.perturbations, res.members['PGD'].perturbations):
        assert torch.equal(a, b)
    assert member_seeds([3, 4], 0) == [3, 4]
    assert len(set(member_seeds([3, 4], 1) + member_seeds([3, 4], 2) + [3, 4])) == 6
