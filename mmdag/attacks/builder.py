"""Building an attack from its config (:func:`build_attack`) and the
``--attack`` names of the registered attacks. An epsilon sweep is built by
:func:`mmdag.attacks.sweep.build_sweep`."""
from mmdag.registry import ATTACKS


def build_attack(cfg: dict):
    """An attack from its config dict (``type`` defaults to ``'DAG'``; the
    other keys are its arguments)."""
    cfg = dict(cfg or {})
    name = cfg.pop('type', 'DAG')
    if not isinstance(name, str):   # a class, as mmengine's build takes it
        return name(**cfg)
    # looked up here, not by ATTACKS.build: build searches the default scope's
    # registry first (mmseg, mmdet) and warns that it has no 'attack' registry
    cls = ATTACKS.get(name)
    if cls is None:
        raise KeyError(f'{name!r} is not in the mmdag::attack registry; registered: '
                       f'{sorted(ATTACKS.module_dict)}')
    return cls(**cfg)


def attack_types() -> dict:
    """``tools/test.py --attack`` name (the registered name in lower case) ->
    the registered type."""
    return {name.lower(): name for name in ATTACKS.module_dict}


def attack_names() -> list:
    """The registered attacks' names, as ``tools/test.py --attack`` takes them."""
    return sorted(attack_types())
