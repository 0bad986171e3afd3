"""The model-zoo benchmark's rows and tables: one Table-1 row per finished
model run (from its ``dag_report.json`` and records), and the tables
``benchmark.md``, ``.csv`` and ``.json`` written from them."""
import csv
import io
import json
import os.path as osp
import statistics
from typing import Dict, List, Optional

from mmdag.engine.records import NOT_ATTACKED, read_records, unique_records
from mmdag.fileio import write_atomic
from mmdag.summary import main_metric, metric_scale


COLUMNS = ('model', 'metric', 'ORIG', 'ADVR', 'PERM', 'iters_mean', 'iters_median', 'p',
           'linf', 'success', 'images', 'sec_per_image', 'device', 'date', 'mmdag', 'mmseg',
           'mmdet', 'torch', 'checkpoint', 'settings')


def model_row(name: str, work_dir: str) -> Optional[dict]:
    """The Table-1 row of a finished model run (None without a report)."""
    rep_path = osp.join(work_dir, 'dag_report.json')
    if not osp.isfile(rep_path):
        return None
    with open(rep_path) as f:
        rep = json.load(f)
    metrics = rep.get('metrics') or {}
    metric = main_metric(metrics)
    scale = metric_scale(metric) if metric else 1.0
    records, _ = read_records(osp.join(work_dir, 'dag_records.jsonl'))
    records = unique_records(records)
    attacked = [r for r in records if r.get('status') not in NOT_ATTACKED]
    attack = rep.get('attack') or {}
    env = rep.get('environment') or {}
    from .zoo_benchmark import read_entry   # the run's entry (zoo_benchmark imports this)
    entry = read_entry(work_dir)
    settings = dict((rep.get('settings') or {}).get('attack') or {})
    settings = {k: settings[k] for k in ('max_iters', 'gamma', 'adv_labels', 'stop_fraction',
                                         'quantize', 'clip_range') if k in settings}

    def variant(v):
        x = metrics.get(f'{v}/{metric}') if metric else None
        return None if x is None else round(scale * float(x), 2)

    seconds = [r['seconds'] for r in records if isinstance(r.get('seconds'), (int, float))]
    return dict(
        model=name, metric=metric.rsplit('/', 1)[-1] if metric else None,
        ORIG=variant('orig'), ADVR=variant('advr'), PERM=variant('perm'),
        iters_mean=_round(attack.get('iters'), 2),
        iters_median=(statistics.median(r['iters'] for r in attacked) if attacked else None),
        p=_round(attack.get('p'), 8), linf=_round(attack.get('linf'), 3),
        success=_round(attack.get('success'), 4),
        images=attack.get('images', len(records)),
        sec_per_image=round(sum(seconds) / len(seconds), 3) if seconds else None,
        device=env.get('device_name') or env.get('device'),
        world_size=env.get('world_size'),
        date=entry.get('finished_at'),
        mmdag=env.get('mmdag'), mmseg=env.get('mmseg'), mmdet=env.get('mmdet'),
        torch=env.get('torch'),
        checkpoint=(entry.get('fingerprint') or {}).get('checkpoint') or rep.get('checkpoint'),
        settings=settings,
        config=rep.get('config'))


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
    return '\n'.join(lines)


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
