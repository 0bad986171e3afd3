import pytest
import torch

from mmdag.attacks.labels import (class_derangement, derangement, least_likely_labels,
                                  permute_labels, random_labels, target_labels)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_random_labels_are_wrong_allowed_and_cover_all_wrong_classes():
    labels = torch.randint(0, 5, (4000,), generator=gen(1))
    adv = random_labels(labels, 5, gen(2), exclude=(0,))
    assert (adv != labels).all()
    assert (adv != 0).all()
    for c in range(1, 5):
        # every allowed wrong class is drawn for targets of label 0, about uniformly
        frac = (adv[labels == 0] == c).float().mean().item()
        assert frac == pytest.approx(0.25, abs=0.05)


def test_random_labels_drop_targets_without_admissible_label():
    labels = torch.tensor([0, 1])
    adv = random_labels(labels, 2, gen(), exclude=(0,))
    assert adv.tolist() == [1, -1]


def test_permute_is_one_derangement_for_all_targets():
    p = derangement(6, gen(3))
    assert sorted(p.tolist()) == list(range(6))
    assert not (p == torch.arange(6)).any()
    labels = torch.tensor([0, 1, 2, 3, 4, 5, 0])
    adv = permute_labels(labels, 6, gen(), perm=p)
    assert torch.equal(adv, p[labels])
    with pytest.raises(ValueError):
        derangement(1, gen())


def test_target_and_least_likely():
    labels = torch.tensor([0, 2, 1])
    assert target_labels(labels, 3, gen(), target=0).tolist() == [-1, 0, 0]
    logits = torch.tensor([[5.0, -3.0, 0.0], [-9.0, 1.0, 2.0], [-1.0, 2.0, -5.0]])
    assert least_likely_labels(labels, 3, gen(), clean_logits=logits).tolist() == [1, 0, 2]
    assert least_likely_labels(labels, 3, gen(), clean_logits=logits,
                               exclude=(0,)).tolist() == [1, 1, 2]


@pytest.mark.parametrize('seed', range(20))
def test_permute_with_background_excluded_attacks_every_class(seed):
    # a detector's C + 1 logits, background (index C) excluded: the
    # permutation moves the C object classes among themselves, so no class is
    # mapped onto background and left unattacked (the former derangement over
    # C + 1 logits left one class without an adversarial label about every time)
    C = 5
    perm = class_derangement(C + 1, (C, ), gen(seed))
    assert perm[C] == -1
    assert sorted(perm[:C].tolist()) == list(range(C))
    assert not (perm[:C] == torch.arange(C)).any()
    labels = torch.arange(C).repeat(3)
    adv = permute_labels(labels, C + 1, gen(), exclude=(C, ), perm=perm)
    assert (adv >= 0).all() and (adv != labels).all() and (adv < C).all()
    # with nothing excluded it is the plain derangement, the same draw
    assert torch.equal(class_derangement(C, (), gen(seed)), derangement(C, gen(seed)))


def test_dag_permute_on_a_background_head_leaves_no_class_unattacked():
    from mmdag.attacks import DAG, TargetSet

    class Softmax(TargetSet):      # C object classes + background (the last logit)
        exclude_adv = (4, )

        def __init__(self, w):
            super().__init__([torch.arange(4)], 5)
            self.w = w

        def logits(self, images, indices):
            # target k is class k, correct with a margin of 10
            return [torch.eye(5)[:4] * 10 + images[0].mean() * self.w]

    for seed in range(10):
        res = DAG(max_iters=0, adv_labels='permute', seed=seed)(
            [torch.full((3, 4, 4), 100.)], Softmax(torch.linspace(-1e-3, 1e-3, 5)))
        adv = res.adv_labels[0]
        assert (adv >= 0).all() and (adv < 4).all() and (adv != torch.arange(4)).all(), (seed, adv)
