import pytest
import torch

from mmdag.attacks.labels import (derangement, least_likely_labels, permute_labels,
                                  random_labels, target_labels)


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
    assert least_likely_labels(labels, 3, gen(), clean_logits=logits, exclude=(0,)).tolist() == [1, 1, 2]
