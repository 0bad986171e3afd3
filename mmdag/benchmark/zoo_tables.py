"""The model-zoo benchmark's rows and tables: one Table-1 row per finished
model run (from its ``attack_report.json`` and records; a run of mmdag
before 0.2 from its ``dag_report.json``), and the tables
``benchmark.md``, ``.csv`` and ``.json`` written from them."""
import csv
import io
import json
import os.path as osp
import statistics
from typing import Dict, List, Optional, Tuple

from mmdag.contract import RECORDS_FILE, REPORT_FILE, work_path
from mmdag.engine.records import NOT_ATTACKED, read_records, unique_records
from mmdag.fileio import write_atomic
from mmdag.summary import main_metric, member_values, metric_scale, read_report
from .zoo_entry import read_entry

COLUMNS = ('model', 'metric', 'ORIG', 'ADVR', 'PERM', 'iters_mean', 'iters_median', 'p',
           'linf', 'success', 'images', 'sec_per_image', 'device', 'date', 'mmdag', 'mmseg',
           'mmdet', 'torch', 'checkpoint', 'settings', 'attacks')


def _read_run(work_dir: str) -> Optional[Tuple[dict, List[dict]]]:
    """A finished run's report and its records, each image once (None
    without a report)."""
    rep_path = work_path(work_dir, REPORT_FILE)
    if not osp.isfile(rep_path):
        return None
    rep = read_report(rep_path)
    return rep, unique_records(read_records(work_path(work_dir, RECORDS_FILE))[0])


def _sec_per_image(records: List[dict]) -> Optional[float]:
    """The mean attack seconds per image of a run's records."""
    seconds = [r['seconds'] for r in records if isinstance(r.get('seconds'), (int, float))]
    return round(sum(seconds) / len(seconds), 3) if seconds else None


def model_row(name: str, work_dir: str) -> Optional[dict]:
    """The Table-1 row of a finished model run (None without a report)."""
    run = _read_run(work_dir)
    if run is None:
        return None
    rep, records = run
    metrics = rep.get('metrics') or {}
    metric = main_metric(metrics)
    scale = metric_scale(metric) if metric else 1.0
    attacked = [r for r in records if r.get('status') not in NOT_ATTACKED]
    attack = rep.get('attack') or {}
    env = rep.get('environment') or {}
    entry = read_entry(work_dir)
    settings = dict((rep.get('settings') or {}).get('attack') or {})
    settings = {k: settings[k] for k in ('max_iters', 'gamma', 'adv_labels', 'stop_fraction',
                                         'quantize', 'clip_range') if k in settings}

    def variant(v):
        x = metrics.get(f'{v}/{metric}') if metric else None
        return None if x is None else round(scale * float(x), 2)

    return dict(
        model=name, metric=metric.rsplit('/', 1)[-1] if metric else None,
        ORIG=variant('orig'), ADVR=variant('advr'), PERM=variant('perm'),
        iters_mean=_round(attack.get('iters'), 2),
        iters_median=(statistics.median(r['iters'] for r in attacked) if attacked else None),
        p=_round(attack.get('p'), 8), linf=_round(attack.get('linf'), 3),
        success=_round(attack.get('success'), 4),
        images=attack.get('images', len(records)),
        sec_per_image=_sec_per_image(records),
        device=env.get('device_name') or env.get('device'),
        world_size=env.get('world_size'),
        date=entry.get('finished_at'),
        mmdag=env.get('mmdag'), mmseg=env.get('mmseg'), mmdet=env.get('mmdet'),
        torch=env.get('torch'),
        checkpoint=(entry.get('fingerprint') or {}).get('checkpoint') or rep.get('checkpoint'),
        settings=settings,
        config=rep.get('config'))


def budget_row(work_dir: str) -> Optional[dict]:
    """The budgeted attacks' part of a model's row, from its worst-case run
    (``<model work dir>/attacks``): the budget, each member's ADVR and the
    worst case per image (the run's ADVR), also rounded to 8 bits, in %;
    the members' wins; images and seconds per image. None without a report."""
    run = _read_run(work_dir)
    if run is None:
        return None
    rep, records = run
    metrics = rep.get('metrics') or {}
    metric = main_metric(metrics)
    if metric is None:
        return None
    scale = metric_scale(metric)
    members = (rep.get('settings') or {}).get('attack', {}).get('attacks') or []
    wins: Dict[str, int] = {}
    for r in records:
        if r.get('winner') and r.get('status') not in NOT_ATTACKED:
            wins[r['winner']] = wins.get(r['winner'], 0) + 1

    def value(key):
        x = metrics.get(key)
        return None if x is None else round(scale * float(x), 2)

    return dict(
        epsilon=members[0].get('epsilon') if members else None,
        max_iters=members[0].get('max_iters') if members else None,
        members={n: round(scale * float(v), 2)
                 for n, v in member_values(metrics, metric).items()},
        # the headline is the worst case (at or below every member, the
        # report's ``headline`` says by which selection); ``winners`` is the
        # attack's own per-image choice, whose images are saved and drawn
        worst=value(f'advr/{metric}'), worst_uint8=value(f'advr_uint8/{metric}'),
        winners=value(f'advr_winner/{metric}'), found=_found(rep),
        wins=wins, images=(rep.get('attack') or {}).get('images', len(records)),
        sec_per_image=_sec_per_image(records))


def _found(rep: dict) -> Optional[str]:
    """A detector's worst case by objects found: ``found / objects`` at the
    breakdown's score threshold (None for a segmentor)."""
    errors = rep.get('errors') or {}
    worst = (errors.get('variants') or {}).get('advr_worst')
    return None if not worst else f"{worst.get('tp')}/{errors.get('gt')}"


def _attack_names(rows: List[dict]) -> List[str]:
    """The budgeted attacks of the rows' worst-case runs, in run order."""
    return list(dict.fromkeys(n for r in rows
                              for n in ((r.get('attacks') or {}).get('members') or {})))


def _round(v, n):
    return round(float(v), n) if isinstance(v, (int, float)) else None


def _cell(v, fmt='{}'):
    if v is None:
        return '-'
    return fmt.format(v)


def format_rows(rows: List[dict]) -> str:
    """Table 1 as text: one line per model."""
    head = (f"{'model':<32} {'metric':<6} {'ORIG':>6} {'ADVR':>6} {'PERM':>6} {'iters':>6} "
            f"{'median':>6} {'p':>8} {'L-inf':>6} {'success':>7} {'imgs':>5} {'s/img':>6}")
    lines = [head, '-' * len(head)]
    for r in rows:
        if r.get('failed'):
            lines.append(f"{r['model'][:32]:<32} failed: {r['failed'][:80]}")
            continue
        succ = None if r['success'] is None else 100 * r['success']
        lines.append(
            f"{r['model'][:32]:<32} {_cell(r['metric']):<6} {_cell(r['ORIG'], '{:6.2f}'):>6} "
            f"{_cell(r['ADVR'], '{:6.2f}'):>6} {_cell(r['PERM'], '{:6.2f}'):>6} "
            f"{_cell(r['iters_mean'], '{:6.1f}'):>6} {_cell(r['iters_median'], '{:6.1f}'):>6} "
            f"{_cell(r['p'], '{:8.2e}'):>8} {_cell(r['linf'], '{:6.2f}'):>6} "
            f"{_cell(succ, '{:6.1f}%'):>7} {_cell(r['images']):>5} "
            f"{_cell(r['sec_per_image'], '{:6.2f}'):>6}")
    return '\n'.join(lines + _budget_lines(rows, markdown=False))


def _budget_lines(rows: List[dict], markdown: bool = True) -> List[str]:
    """The budgeted attacks' table: per model with a worst-case run, ORIG,
    each attack's ADVR, the worst case per image and its 8-bit figure."""
    names = _attack_names(rows)
    runs = [r for r in rows if not r.get('failed') and r.get('attacks')]
    if not names or not runs:
        return []
    first = next((r['attacks'] for r in runs if not r['attacks'].get('failed')), {})
    eps, iters = first.get('epsilon'), first.get('max_iters')
    title = (f"Budgeted attacks (L-inf epsilon {_cell(eps)} on the 0..255 scale, "
             f"{_cell(iters)} iterations): {', '.join(names)} and the worst case per image")
    head = ['model', 'metric', 'ORIG', *names, 'worst case', "attack's winners",
            'objects found', 'worst, 8-bit', 'wins', 'images', 's/img']
    out = ['', title, '']
    if markdown:
        out += ['| ' + ' | '.join(head) + ' |', '|---|---|' + '---:|' * (len(head) - 2)]
    else:
        out += [' '.join(f'{h[:12]:>12}' if k else f'{h:<32}' for k, h in enumerate(head))]
    for r in runs:
        a = r['attacks']
        if a.get('failed'):
            cells = [r['model'], f"failed: {a['failed']}"]
        else:
            wins = ', '.join(f'{n} {k}' for n, k in (a.get('wins') or {}).items()) or '-'
            cells = [r['model'], _cell(r['metric']), _cell(r['ORIG'], '{:.2f}'),
                     *(_cell((a.get('members') or {}).get(n), '{:.2f}') for n in names),
                     _cell(a.get('worst'), '{:.2f}'), _cell(a.get('winners'), '{:.2f}'),
                     _cell(a.get('found')),
                     _cell(a.get('worst_uint8'), '{:.2f}'),
                     wins, _cell(a.get('images')), _cell(a.get('sec_per_image'), '{:.2f}')]
        if markdown:
            out.append('| ' + ' | '.join(cells) + ' |')
        else:
            out.append(' '.join(f'{c[:12]:>12}' if k else f'{c[:32]:<32}'
                                for k, c in enumerate(cells)))
    return out


def markdown(rows: List[dict]) -> str:
    """``benchmark.md``: Table 1, then where each figure was measured."""
    out = ['| model | metric | ORIG | ADVR | PERM | iters (mean) | iters (median) | p | L-inf | '
           'success | images | s/img | device |',
           '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|']
    for r in rows:
        if r.get('failed'):
            out.append(f"| {r['model']} | failed: {r['failed']} |" + ' |' * 11)
            continue
        succ = None if r['success'] is None else 100 * r['success']
        world = r.get('world_size') or 1
        dev = _cell(r['device']) + (f' x{world}' if world > 1 else '')
        out.append(
            f"| {r['model']} | {_cell(r['metric'])} | {_cell(r['ORIG'], '{:.2f}')} | "
            f"{_cell(r['ADVR'], '{:.2f}')} | {_cell(r['PERM'], '{:.2f}')} | "
            f"{_cell(r['iters_mean'], '{:.1f}')} | {_cell(r['iters_median'], '{:.1f}')} | "
            f"{_cell(r['p'], '{:.2e}')} | {_cell(r['linf'], '{:.2f}')} | "
            f"{_cell(succ, '{:.1f}%')} | {_cell(r['images'])} | "
            f"{_cell(r['sec_per_image'], '{:.2f}')} | {dev} |")
    out += ['', 'Metric in %: mIoU (segmentation) or VOC mAP (detection) on the clean images '
            '(ORIG), the DAG images (ADVR) and the clean images plus a pixel-permuted '
            'perturbation (PERM). iters, p, L-inf, success: over the attacked images (those '
            'with a target correct on the clean image). s/img: attack seconds per image '
            '(target building and the DAG loop).', '']
    budget = _budget_lines(rows)
    if budget:
        out += budget + ['', 'Worst case: per image, the attack that left the fewest attacked '
                         'targets correct (SEA\'s criterion); wins: the images each attack '
                         'won. Greedy: per image, the attack chosen greedily for the mIoU '
                         '(SEA\'s selection). Fewest found (detectors): per image, the attack '
                         'that left the fewest objects found at score 0.3, unless one attack '
                         'on every image gives a lower mAP; objects found: its found / all '
                         'objects. 8-bit: the worst case rounded to 8-bit images inside the '
                         'budget.', '']
    for r in rows:
        if r.get('failed'):
            continue
        out.append(f"- **{r['model']}**: {r.get('config')}, checkpoint {r['checkpoint']}; "
                   f"settings {json.dumps(r['settings'], sort_keys=True)}; "
                   f"finished {r['date']}; mmdag {r['mmdag']}, mmseg {r['mmseg']}, "
                   f"mmdet {r['mmdet']}, torch {r['torch']}")
    return '\n'.join(out) + '\n'


def csv_text(rows: List[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=[*COLUMNS, 'failed'], extrasaction='ignore',
                       lineterminator='\n')
    w.writeheader()
    for r in rows:
        w.writerow({k: (json.dumps(v, sort_keys=True) if isinstance(v, dict) else v)
                    for k, v in r.items()})
    return buf.getvalue()


def write_tables(out_dir: str, rows: List[dict], meta: dict) -> Dict[str, str]:
    """Write ``benchmark.md``, ``.csv`` and ``.json`` (each atomically, and
    only when its content changed); return their paths, and whether any
    was written under the key ``'changed'``."""
    paths = {'changed': False}
    texts = {'benchmark.md': markdown(rows), 'benchmark.csv': csv_text(rows),
             'benchmark.json': json.dumps(dict(meta, rows=rows), indent=2, sort_keys=True,
                                          default=str) + '\n'}
    for name, text in texts.items():
        path = osp.join(out_dir, name)
        paths['changed'] |= write_if_changed(path, text)
        paths[name] = path
    return paths


def write_if_changed(path: str, text: str) -> bool:
    """Write ``text`` to ``path`` atomically, unless the file already holds
    it (a rerun of a finished list changes no file); True when written."""
    try:
        with open(path, encoding='utf-8') as f:
            if f.read() == text:
                return False
    except OSError:
        pass
    write_atomic(path, text)
    return True


def transfer_table(entries: List[dict], pairs: List[dict], bench_dir: str) -> Tuple[str, dict]:
    """The transfer matrix (drop ORIG - ADVR, in %) of the white-box runs
    (``entries``, in ``bench_dir/<name>``) and the transfer runs (``pairs``,
    :func:`mmdag.benchmark.zoo_followups.transfer_entries`), labelled by list
    names: its text and its data (``transfer.json``)."""
    from mmdag.summary import format_matrix, transfer_matrix
    reports, sources = {}, {}
    for e in entries:
        path = work_path(osp.join(bench_dir, e['name']), REPORT_FILE)
        if osp.isfile(path):
            rep = dict(read_report(path), config=e['name'])
            reports[path] = rep
            sources[osp.normpath(osp.join(osp.abspath(bench_dir), e['name'],
                                          'perturbations'))] = rep
    for t in pairs:
        path = work_path(t['work_dir'], REPORT_FILE)
        if osp.isfile(path):
            reports[path] = dict(read_report(path), config=t['target'])
    rows, cols, cells = transfer_matrix(reports, sources)
    return format_matrix(rows, cols, cells), dict(
        rows=rows, cols=cols,
        cells=[dict(made_on=r, applied_to=c, drop=v) for (r, c), v in cells.items()])
