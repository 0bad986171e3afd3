"""Adversarial label strategies: which wrong label ``l'_n`` each target gets.

Every strategy is a function ``(labels, num_classes, generator, clean_logits,
exclude) -> adv_labels`` for one image. ``adv_labels[n] == -1`` drops target
``n`` from the attack (it has no admissible adversarial label). All draws come
from the per-image ``generator`` so that a run is reproducible whatever the
batch composition or the number of processes.
"""
from typing import Callable, Dict, Optional, Sequence

import torch
from torch import Tensor

from mmdag.errors import SettingError

LabelStrategy = Callable[..., Tensor]


def _allowed(num_classes: int, exclude: Sequence[int], device) -> Tensor:
    allowed = torch.ones(num_classes, dtype=torch.bool, device=device)
    for c in exclude:
        if 0 <= c < num_classes:
            allowed[c] = False
    return allowed


def random_labels(labels: Tensor, num_classes: int, generator: torch.Generator,
                  clean_logits: Optional[Tensor] = None,
                  exclude: Sequence[int] = ()) -> Tensor:
    """A uniformly random wrong class per target (the paper's default)."""
    allowed = _allowed(num_classes, exclude, 'cpu')
    lab = labels.cpu()
    # Candidates per target: allowed classes other than its own label.
    cand = allowed.unsqueeze(0).expand(lab.numel(), -1).clone()
    cand[torch.arange(lab.numel()), lab] = False
    count = cand.sum(1)
    u = torch.rand(lab.numel(), generator=generator)
    k = (u * count).floor().long().clamp(max=(count - 1).clamp(min=0))
    # k-th True in each row of cand.
    csum = cand.long().cumsum(1)
    adv = (csum <= k.unsqueeze(1)).sum(1)
    adv[count == 0] = -1
    return adv.to(labels.device)


def permute_labels(labels: Tensor, num_classes: int, generator: torch.Generator,
                   clean_logits: Optional[Tensor] = None,
                   exclude: Sequence[int] = (), perm: Optional[Tensor] = None) -> Tensor:
    """One fixed random permutation of the admissible classes without fixed points.

    ``perm`` is drawn once per attack (see :func:`class_derangement`) and
    passed in. The permutation moves the classes that are not excluded among
    themselves, so every class keeps an adversarial label (a detector's
    background is never one, and no class is mapped onto it); targets of an
    excluded class are dropped.
    """
    if perm is None:
        perm = class_derangement(num_classes, exclude, generator)
    adv = perm.to(labels.device)[labels]
    allowed = _allowed(num_classes, exclude, labels.device)
    adv[(adv < 0) | ~allowed[adv.clamp_min(0)]] = -1
    return adv


def target_labels(labels: Tensor, num_classes: int, generator: torch.Generator,
                  clean_logits: Optional[Tensor] = None,
                  exclude: Sequence[int] = (), target: int = 0) -> Tensor:
    """All targets to one class; targets already of that class are dropped.

    The class is asked for explicitly, so ``exclude`` does not apply: a
    detector's background is a valid target (the objects vanish).
    """
    adv = torch.full_like(labels, target)
    adv[labels == target] = -1   # an explicit target overrides ``exclude``
    return adv


def least_likely_labels(labels: Tensor, num_classes: int, generator: torch.Generator,
                        clean_logits: Optional[Tensor] = None,
                        exclude: Sequence[int] = ()) -> Tensor:
    """The class with the lowest clean logit (other than the true one)."""
    if clean_logits is None:
        raise ValueError('least_likely needs the clean logits of the targets')
    scores = clean_logits.detach().clone().float()
    allowed = _allowed(num_classes, exclude, scores.device)
    scores[:, ~allowed] = float('inf')
    scores[torch.arange(labels.numel(), device=labels.device), labels] = float('inf')
    adv = scores.argmin(1)
    adv[torch.isinf(scores.gather(1, adv[:, None]).squeeze(1))] = -1
    return adv


def derangement(n: int, generator: torch.Generator) -> Tensor:
    """A random permutation of ``range(n)`` with no fixed point (n >= 2)."""
    if n < 2:
        raise ValueError('a class permutation without fixed points needs >= 2 classes')
    while True:
        perm = torch.randperm(n, generator=generator)
        if not (perm == torch.arange(n)).any():
            return perm


def class_derangement(num_classes: int, exclude: Sequence[int],
                      generator: torch.Generator) -> Tensor:
    """``perm[c]``: the image of class ``c`` under a random derangement of the
    classes not in ``exclude``; -1 for an excluded class. With nothing
    excluded this is :func:`derangement` itself (the same draw)."""
    allowed = _allowed(num_classes, exclude, 'cpu')
    kept = torch.nonzero(allowed)[:, 0]
    perm = torch.full((num_classes, ), -1, dtype=torch.long)
    perm[kept] = kept[derangement(len(kept), generator)]
    return perm


STRATEGIES: Dict[str, LabelStrategy] = {
    'random': random_labels,
    'permute': permute_labels,
    'target': target_labels,
    'least_likely': least_likely_labels,
}


def draw_adv_labels(attack, i_seed: int, labels: Tensor, targets, clean_logits: Tensor) -> Tensor:
    """One image's adversarial labels for an attack with DAG's label
    settings (``adv_labels``, ``target_class``, ``exclude_classes`` and the
    base ``seed`` of a class permutation), from the image's seed ``i_seed``;
    the target set's own exclusions (a detector's background) are added."""
    num_classes = targets.num_classes
    gen = torch.Generator().manual_seed(i_seed)
    exclude = tuple(attack.exclude_classes) + tuple(targets.exclude_adv)
    kwargs = dict(clean_logits=clean_logits, exclude=exclude)
    if attack.adv_labels == 'permute':
        # one permutation for the whole run: it depends on the base seed only
        kwargs['perm'] = class_derangement(num_classes, exclude,
                                           torch.Generator().manual_seed(attack.seed))
    elif attack.adv_labels == 'target':
        if not 0 <= attack.target_class < num_classes:
            raise SettingError(
                f'target_class {attack.target_class} is out of range: the model scores '
                f'{num_classes} classes (0 to {num_classes - 1}); set the attack\'s '
                'target_class to one of them')
        kwargs['target'] = attack.target_class
    return STRATEGIES[attack.adv_labels](labels, num_classes, gen, **kwargs)
