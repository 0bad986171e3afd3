"""The zoo benchmark's runs that follow the models' DAG runs: one worst-case
run per finished model over the budgeted attacks (``--attacks``,
``--det-attacks``), and with ``--transfer`` one run per ordered pair of
finished models of one task, applying the perturbations of one to the other.
Each is a list entry of its own, run as the models are
(:func:`mmdag.benchmark.zoo_run.run_list`)."""
import os.path as osp
from typing import List, Optional, Sequence, Tuple

from mmdag.errors import MMDagError
from .zoo_entry import read_entry

#: the attacks that are not budgeted ones
NOT_BUDGETED = ('dag', 'worstcase')


def budget_settings(list_path: str, attacks: Optional[Sequence[str]] = None,
                    det_attacks: Optional[Sequence[str]] = None,
                    budget_options: Optional[dict] = None) -> Tuple[list, list, dict]:
    """The budgeted attacks and their settings: ``attacks`` (segmentors,
    ``--attacks``), ``det_attacks`` (detectors, ``--det-attacks``) and
    ``budget_options`` (``--budget-options``) over the list's ``attacks``,
    ``det_attacks`` and ``budget_options``. ``['none']``: none.

    Raises:
        MMDagError: a name that is not a budgeted attack.
    """
    from mmengine.config import Config

    from mmdag.attacks import attack_types
    cfg = Config.fromfile(list_path)
    known = attack_types()
    chosen = []
    for flag, key, given in (('--attacks', 'attacks', attacks),
                             ('--det-attacks', 'det_attacks', det_attacks)):
        names = given if given is not None else list(cfg.get(key, None) or [])
        names = [] if names == ['none'] else [str(a).lower() for a in names]
        bad = [a for a in names if a not in known or a in NOT_BUDGETED]
        if bad:
            raise MMDagError(f'{flag} {bad}: budgeted attacks are '
                             + ', '.join(a for a in sorted(known) if a not in NOT_BUDGETED))
        chosen.append(names)
    budget = {**dict(cfg.get('budget_options', None) or {}), **(budget_options or {})}
    return chosen[0], chosen[1], budget


def budget_entries(entries: List[dict], rows: dict, bench_dir: str, attacks: Sequence[str],
                   det_attacks: Sequence[str], budget: dict) -> List[dict]:
    """One worst-case run per finished model, in ``DIR/<name>/attacks``,
    over ``attacks`` for a segmentor (mIoU) and ``det_attacks`` for a
    detector (each member's own figure comes with it). ``rows``: the
    finished models' rows by name."""
    out = []
    for e in entries:
        metric = (rows.get(e['name']) or {}).get('metric')
        members = attacks if metric == 'mIoU' else det_attacks if metric == 'mAP' else []
        if not members:
            continue
        out.append(dict(e, name=f"{e['name']}.attacks", model=e['name'],
                        work_dir=osp.join(bench_dir, e['name'], 'attacks'), attack='worstcase',
                        attack_options={**budget, 'attacks': list(members)}))
    return out


def transfer_entries(entries: List[dict], rows: dict, bench_dir: str) -> List[dict]:
    """A transfer run per ordered pair of finished models of one task, in
    ``DIR/transfer/<source>_on_<target>``. ``rows``: the finished models'
    rows by name."""
    out = []
    task = {e['name']: (rows.get(e['name']) or {}).get('metric') for e in entries}
    for src in entries:
        for dst in entries:
            if src is dst or not task[src['name']] or task[src['name']] != task[dst['name']]:
                continue
            out.append(dict(dst, name=f"{src['name']}_on_{dst['name']}",
                            work_dir=osp.join(bench_dir, 'transfer',
                                              f"{src['name']}_on_{dst['name']}"),
                            transfer_from=osp.abspath(osp.join(bench_dir, src['name'],
                                                               'perturbations')),
                            source=src['name'], target=dst['name'],
                            source_finished=read_entry(osp.join(bench_dir, src['name']))
                            .get('finished_at')))
    return out
