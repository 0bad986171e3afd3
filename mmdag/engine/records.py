"""Per-image records of an attack run: ``<work_dir>/attack_records.jsonl``.

One JSON object per line and per test image, appended by every rank after
each batch (once the batch's metrics are processed) in one ``write`` of an
``O_APPEND`` file, so that lines of two ranks never interleave and a run
killed at any moment leaves whole lines, plus at most one cut line that the
reader skips. Fields of a line:

- ``image`` (file stem, as the saved perturbations name it), ``img_path``,
  ``rank``, ``batch`` (the rank's batch index);
- the attack statistics of :class:`mmdag.attacks.AttackResult`: ``iters``,
  ``p``, ``linf``, ``correct_frac`` (fraction of attacked targets still
  correct), ``num_targets``, ``num_correct``, ``converged``, ``status``,
  ``forwards``, ``backwards`` and ``trace`` (the fraction still correct at
  each check, ``X_0`` to the last);
- in an epsilon sweep, ``sweep``: those statistics at every epsilon
  (``{"0.5": {...}, ...}``, without the traces; the top-level ones are the
  largest epsilon's);
- ``seconds``: the batch's attack time (target building and the attack's loop)
  shared equally among its images, and ``batch_seconds``.
"""
import json
import math
import os
import time
from typing import List, Optional, Tuple

from mmdag.contract import NOT_ATTACKED, RECORDS_FILE, epsilon_label

RECORDS = RECORDS_FILE   # the name this module exported before 0.2
__all__ = ['RECORDS', 'NOT_ATTACKED', 'make_records', 'append_records', 'read_records',
           'unique_records', 'keep_aside', 'start_records', 'convergence']


def make_records(names: List[str], paths: List[Optional[str]], stats: List[dict],
                 seconds: float, rank: int, batch: int,
                 sweep: Optional[dict] = None) -> List[dict]:
    """One record per image of a batch; with an epsilon sweep's results
    (``{epsilon: AttackResult}``), its ``sweep``: the image's statistics at
    every epsilon, without their traces."""
    n = max(1, len(stats))
    out = []
    for k, (name, path, s) in enumerate(zip(names, paths, stats)):
        rec = dict(image=name, img_path=path, rank=rank, batch=batch)
        rec.update({k_: _plain(v) for k_, v in s.items()})
        rec.update(seconds=round(seconds / n, 6), batch_seconds=round(seconds, 6))
        if sweep is not None:
            rec['sweep'] = {epsilon_label(e): {k_: _plain(v) for k_, v in res.stats[k].items()
                                               if k_ != 'trace'}
                            for e, res in sweep.items()}
        out.append(rec)
    return out


def records_bytes(records: List[dict]) -> bytes:
    """``records`` as the file's lines."""
    return ''.join(json.dumps(r, separators=(',', ':'), allow_nan=True) + '\n'
                   for r in records).encode()


def append_records(path: str, records: List[dict]) -> None:
    """Append ``records`` as lines, in a single write (see the module)."""
    if not records:
        return
    data = records_bytes(records)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        written = os.write(fd, data)
        while written < len(data):   # a short write (signal, quota): finish it
            written += os.write(fd, data[written:])
    finally:
        os.close(fd)


def read_records(path: str) -> Tuple[List[dict], int]:
    """The whole records of ``path`` and the number of lines skipped (cut by
    a kill, or not a JSON object); ``([], 0)`` when there is no file."""
    if not os.path.isfile(path):
        return [], 0
    with open(path, 'rb') as f:
        data = f.read()
    lines = data.split(b'\n')
    # the text after the last newline was never finished
    complete, tail = lines[:-1], lines[-1]
    records, skipped = [], int(bool(tail.strip()))
    for line in complete:
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            skipped += 1
            continue
        if isinstance(rec, dict) and 'image' in rec:
            records.append(rec)
        else:
            skipped += 1
    return records, skipped


def unique_records(records: List[dict]) -> List[dict]:
    """The first record of each image: a distributed sampler pads the last
    batch of a rank with copies of test images, which are attacked and
    recorded again."""
    seen, out = set(), []
    for r in records:
        if r['image'] not in seen:
            seen.add(r['image'])
            out.append(r)
    return out


def keep_aside(path: str, ext: str = '') -> Optional[str]:
    """Rename an existing file or directory ``path`` to a dated name
    (``<root>.<YYYYmmdd_HHMMSS>[_k]<ext>``, the date its last change) and
    return it; None when there is nothing. Nothing is deleted."""
    if not os.path.exists(path):
        return None
    stamp = time.strftime('%Y%m%d_%H%M%S', time.localtime(os.path.getmtime(path)))
    root = path[:len(path) - len(ext)] if ext else path
    new, k = f'{root}.{stamp}{ext}', 1
    while os.path.exists(new):
        new, k = f'{root}.{stamp}_{k}{ext}', k + 1
    os.replace(path, new)
    return new


def start_records(path: str) -> Optional[str]:
    """A new run: an existing records file is kept aside, renamed with its
    date (``attack_records.<YYYYmmdd_HHMMSS>.jsonl``), and its new name
    returned; nothing is deleted."""
    return keep_aside(path, os.path.splitext(path)[1])


def convergence(records: List[dict]) -> Optional[dict]:
    """The fraction of targets still correct against the iteration, across
    the attacked images (an image that stopped keeps its last value):
    per iteration the median, the quartiles and the mean, and the fraction
    of images still being updated. None when no image was attacked."""
    import numpy as np

    # in image order, not the file's (the ranks' timing): the mean's rounding is the same
    traces = [r['trace'] for r in sorted(records, key=lambda r: str(r.get('image')))
              if r.get('status') not in NOT_ATTACKED and r.get('trace')]
    if not traces:
        return None
    length = max(len(t) for t in traces)
    grid = np.array([t + [t[-1]] * (length - len(t)) for t in traces], dtype=float)
    running = np.array([[m < len(t) - 1 for m in range(length)] for t in traces])
    q25, med, q75 = np.quantile(grid, [0.25, 0.5, 0.75], axis=0)

    def rnd(a):
        return [round(float(v), 6) for v in a]

    return dict(images=len(traces), iterations=length - 1, median=rnd(med), q25=rnd(q25),
                q75=rnd(q75), mean=rnd(grid.mean(0)), running=rnd(running.mean(0)),
                explained=('fraction of attacked targets still correct after m updates '
                           '(index m), across the attacked images; an image that stopped '
                           'keeps its last value; running: fraction of images still updated'))


def _plain(v):
    """A JSON value: tensors and numpy scalars as Python numbers; NaN kept."""
    if hasattr(v, 'tolist'):
        v = v.tolist()
    if isinstance(v, float) and math.isnan(v):
        return float('nan')
    return v
