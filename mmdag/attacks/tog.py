"""TOG's attacks (Chow et al., "Adversarial Objectness Gradient Attacks in
Real-time Object Detection Systems", TPS 2020; the authors' ``tog/attacks.py``).

Plain PyTorch; no OpenMMLab import. For now these are the matched-target
attacks of :mod:`mmdag.attacks.matched` under TOG's names.
"""
from .matched import MatchedMislabel, MatchedUntargeted, MatchedVanishing, vanishing_loss

__all__ = ['TOGVanishing', 'TOGMislabel', 'TOGUntargeted', 'vanishing_loss']


class TOGVanishing(MatchedVanishing):
    """:class:`~mmdag.attacks.matched.MatchedVanishing` under TOG's name."""


class TOGUntargeted(MatchedUntargeted):
    """:class:`~mmdag.attacks.matched.MatchedUntargeted` under TOG's name."""


class TOGMislabel(MatchedMislabel):
    """:class:`~mmdag.attacks.matched.MatchedMislabel` under TOG's name."""
