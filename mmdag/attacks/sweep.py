"""One attack at several budgets: an epsilon sweep on one batch.

Plain PyTorch over mmdag's attack registry. The attacks are built by
:func:`build_sweep`, one per epsilon, from
:func:`sweep_config`: equal settings but the budget and, where the config
does not set it, the step.

**The step scales with the budget.** A step ``alpha`` given in the config is
kept at every epsilon. Without one, each epsilon gets the authors' ratio of
step to budget at their budget, the attack's defaults
(:func:`scaled_alpha`): ``alpha = default_alpha * epsilon / default_epsilon``.
For PGD, SegPGD and CosPGD that is SemSegBench's 2.55 at epsilon 8, so 0.08
at 0.25 (a fixed 2.55 would be ten times a budget of 0.25 and jump from
corner to corner); for TOG and DetPGD, 2 at 8. An attack without a step
(DAG, APGD) is built as it is. The members of a ``WorstCase`` given by name
or config dict are scaled each by its own defaults.

Each runs from the clean image on the same targets with the same
per-image seeds, so its result at an epsilon is the one a run at that
epsilon alone gives; the attacks that start at random share one clean
forward (counted in the first one's ``forwards``).
"""
import inspect
from typing import Dict, List, Optional, Sequence, Tuple

from torch import Tensor

from mmdag.registry import ATTACKS
from .builder import attack_types, build_attack
from .result import AttackResult
from .targets import TargetSet
from .worst_case import clean_forward, starts_at_random

__all__ = ['EpsilonSweep', 'budget_of', 'scaled_alpha', 'sweep_config']


def budget_of(attack) -> Optional[float]:
    """The L-inf budget of an attack: its ``epsilon`` (an ensemble's is the
    one all its members share; None when they differ or one has none)."""
    return getattr(attack, 'epsilon', None)


def _attack_class(name):
    """The class of a registered attack name (any case) or a class; None."""
    if not isinstance(name, str):
        return name if inspect.isclass(name) else None
    return ATTACKS.get(attack_types().get(name.lower(), name))


def scaled_alpha(attack_type, epsilon: float) -> Optional[float]:
    """The step of ``attack_type`` (a registered name or a class) at budget
    ``epsilon`` with the ratio of its default ``alpha`` to its default
    ``epsilon`` (module docstring); None for an attack without both."""
    cls = _attack_class(attack_type)
    if cls is None:
        return None
    params = inspect.signature(cls.__init__).parameters
    alpha, eps = params.get('alpha'), params.get('epsilon')
    if alpha is None or eps is None or not isinstance(alpha.default, (int, float)) \
            or not isinstance(eps.default, (int, float)) or eps.default <= 0:
        return None
    return float(alpha.default) * float(epsilon) / float(eps.default)


def _member_config(member, epsilon: float):
    """A ``WorstCase`` member (name, dict or built attack) at ``epsilon``: a
    dict with its step scaled where it sets none; a built attack as it is."""
    if isinstance(member, str):
        kind = attack_types().get(member.lower())
        if kind is None:
            return member   # unknown: WorstCase says so in one line
        member = dict(type=kind)
    if not isinstance(member, dict):
        return member
    out = dict(member)
    alpha = None if 'alpha' in out else scaled_alpha(out.get('type'), epsilon)
    if alpha is not None:
        out['alpha'] = alpha
    return out


def sweep_config(cfg: dict, epsilon: float) -> dict:
    """The config of the attack ``cfg`` at one ``epsilon`` of a sweep: its
    ``epsilon`` set and, where it sets no ``alpha``, the step scaled to the
    budget (module docstring); a given ``alpha`` is kept.

    Args:
        cfg (dict): the attack's config (``type`` defaults to ``'DAG'``).
        epsilon (float): the budget, 0..255 scale.

    Returns:
        dict: the config to build.
    """
    cfg = dict(cfg or {}, epsilon=float(epsilon))
    kind = cfg.get('type', 'DAG')
    if getattr(kind, '__name__', kind) == 'WorstCase':
        members = cfg.get('attacks', [])
        members = [members] if isinstance(members, (str, dict)) else list(members)
        cfg['attacks'] = [_member_config(m, epsilon) for m in members]
        return cfg
    if 'alpha' not in cfg:
        alpha = scaled_alpha(kind, epsilon)
        if alpha is not None:
            cfg['alpha'] = alpha
    return cfg


class EpsilonSweep:
    """Run one attack at several budgets on a batch.

    The result is the attack's at the largest epsilon (what the test loop
    predicts as ADVR), with ``sweep``: every epsilon's result, smallest first.

    Args:
        attacks (Sequence[tuple]): ``(epsilon, attack)`` pairs, each attack
            built with that budget (see :func:`budget_of`); the same seed and
            clip range.
    """

    def __init__(self, attacks: Sequence[Tuple[float, object]]) -> None:
        pairs = sorted(((float(e), a) for e, a in attacks), key=lambda p: p[0])
        if not pairs:
            raise ValueError('an epsilon sweep needs at least one epsilon')
        if len({e for e, _ in pairs}) != len(pairs):
            raise ValueError(f'repeated epsilons in {[e for e, _ in pairs]}')
        for e, a in pairs:
            if budget_of(a) is None or abs(budget_of(a) - e) > 1e-9:
                raise ValueError(f'the attack for epsilon {e:g} has budget {budget_of(a)}')
        if len({(a.seed, tuple(a.clip_range)) for _, a in pairs}) > 1:
            raise ValueError('the attacks of a sweep must share seed and clip_range')
        self.epsilons: List[float] = [e for e, _ in pairs]
        self.attacks = [a for _, a in pairs]
        self.primary = self.attacks[-1]
        self.seed = self.primary.seed
        self.clip_range = self.primary.clip_range
        self.epsilon = self.epsilons[-1]

    def settings(self) -> dict:
        """The largest epsilon's settings with ``epsilons`` and, for an
        attack with a step, ``alphas``: the step at each epsilon."""
        out = dict(self.primary.settings(), epsilons=list(self.epsilons))
        alphas = [getattr(a, 'alpha', None) for a in self.attacks]
        if all(a is not None for a in alphas):
            out['alphas'] = [float(a) for a in alphas]
        return out

    def __call__(self, images: Sequence[Tensor], targets: TargetSet,
                 seeds: Optional[Sequence[int]] = None,
                 regions: Optional[Sequence[Optional[Tuple[int, int]]]] = None) -> AttackResult:
        clean = None
        if any(starts_at_random(a) for a in self.attacks):
            clean = clean_forward(images, targets)
        sweep: Dict[float, AttackResult] = {}
        for k, (e, a) in enumerate(zip(self.epsilons, self.attacks)):
            extra = dict(clean_logits=clean) if clean is not None and starts_at_random(a) else {}
            res = a(images, targets, seeds=seeds, regions=regions, **extra)
            if k == 0 and clean is not None:
                for s in res.stats:
                    s['forwards'] = s.get('forwards', 0) + 1
            sweep[e] = res
        top = sweep[self.epsilons[-1]]
        return AttackResult(adv_images=top.adv_images, perturbations=top.perturbations,
                            adv_labels=top.adv_labels, stats=top.stats, sweep=sweep,
                            members=top.members)


def build_sweep(cfg: dict, epsilons):
    """An :class:`~mmdag.attacks.EpsilonSweep` of the attack of ``cfg`` at
    each of ``epsilons`` (0..255 scale): ``cfg`` with its ``epsilon`` set
    to each (a ``WorstCase``'s members share it) and, where it sets no
    ``alpha``, the step scaled to the budget
    (:func:`sweep_config`)."""
    from mmdag.errors import MMDagError
    cfg = dict(cfg or {})
    name = cfg.get('type', 'DAG')
    name = getattr(name, '__name__', name)
    try:
        epsilons = sorted({float(e) for e in epsilons})
    except (TypeError, ValueError):
        raise MMDagError(f'epsilons={epsilons!r}: give numbers on the 0..255 scale '
                         '(e.g. epsilons=[0.25, 0.5, 1, 2, 4, 8])') from None
    if not epsilons or epsilons[0] <= 0:
        raise MMDagError(f'epsilons={epsilons!r}: give one or more budgets > 0 '
                         '(0..255 scale, e.g. [0.25, 0.5, 1, 2, 4, 8])')
    pairs = []
    for e in epsilons:
        try:
            attack = build_attack(sweep_config(cfg, e))
        except TypeError as err:
            raise MMDagError(f'{name} takes no epsilon ({err}): an epsilon sweep needs an '
                             'attack with a budget (pgd, segpgd, cospgd, apgd, dag, '
                             'worstcase)') from None
        if budget_of(attack) is None or abs(budget_of(attack) - e) > 1e-9:
            raise MMDagError(f'{name} at epsilon {e:g} has budget {budget_of(attack)}: in a '
                             "sweep the members of a WorstCase must not set their own "
                             'epsilon (the sweep sets it)')
        pairs.append((e, attack))
    return EpsilonSweep(pairs)
