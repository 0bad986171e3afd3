"""What a DAG run keeps so that a killed run resumes: ``<work_dir>/dag_state/``.

After each batch, every rank writes one file (a temporary file renamed into
place, so a file is whole or absent) holding, per image of the batch: its
name, its index in the test set, its record (:mod:`mmdag.engine.records`)
and the per-image results of every :class:`mmdag.evaluation.DAGMetric`
(each variant's wrapped metric and the attack statistics). ``run.json``
holds the run's settings; a resumed run must have the same.

A resumed run attacks only the images without a state entry, then evaluates
every metric on the saved and the new per-image results in test-set order,
which is the order of an uninterrupted run: the report is the same.
"""
import json
import os
import os.path as osp
import pickle
import time
from typing import Dict, List, Optional, Tuple

from torch.utils.data import DataLoader, Subset

from mmdag.errors import MMDagError

STATE_DIR = 'dag_state'
SETTINGS = 'run.json'


def state_dir(work_dir: str) -> str:
    return osp.join(work_dir, STATE_DIR)


def start_state(work_dir: str) -> Optional[str]:
    """A new run: an existing state directory is kept aside under a dated
    name and its new path returned; nothing is deleted."""
    d = state_dir(work_dir)
    if not osp.exists(d):
        return None
    stamp = time.strftime('%Y%m%d_%H%M%S', time.localtime(osp.getmtime(d)))
    new, k = f'{d}.{stamp}', 1
    while osp.exists(new):
        new, k = f'{d}.{stamp}_{k}', k + 1
    os.replace(d, new)
    return new


def write_settings(work_dir: str, settings: dict) -> None:
    d = state_dir(work_dir)
    os.makedirs(d, exist_ok=True)
    _atomic_write(osp.join(d, SETTINGS), json.dumps(settings, indent=1, sort_keys=True,
                                                    default=str).encode())


def check_settings(work_dir: str, settings: dict) -> None:
    """Refuse to resume a run made with other settings (one line naming the
    first difference)."""
    path = osp.join(state_dir(work_dir), SETTINGS)
    if not osp.isfile(path):
        return
    with open(path) as f:
        saved = json.load(f)
    now = json.loads(json.dumps(settings, sort_keys=True, default=str))
    for key in sorted(set(saved) | set(now)):
        if saved.get(key) != now.get(key):
            raise MMDagError(
                f'cannot resume: {osp.dirname(path)} holds a run with another {key} '
                f'({saved.get(key)!r}, now {now.get(key)!r}): rerun without resuming, or use '
                'another --work-dir')


def write_batch(work_dir: str, rank: int, batch_idx: int, run_id: str, entries: List[dict]):
    d = state_dir(work_dir)
    os.makedirs(d, exist_ok=True)
    name = f'{run_id}-rank{rank}-batch{batch_idx:06d}.pkl'
    _atomic_write(osp.join(d, name), pickle.dumps(entries, protocol=4))


def read_state(work_dir: str) -> Tuple[Dict[str, dict], int]:
    """Finished images by name, and the number of state files that could
    not be read (skipped: their images are attacked again)."""
    d = state_dir(work_dir)
    done, bad = {}, 0
    if not osp.isdir(d):
        return done, bad
    for name in sorted(os.listdir(d)):
        if not name.endswith('.pkl'):
            continue
        try:
            with open(osp.join(d, name), 'rb') as f:
                entries = pickle.load(f)
        except Exception:   # noqa: BLE001  (a damaged file is not data)
            bad += 1
            continue
        for e in entries:
            done[e['name']] = e
    return done, bad


class _Remaining(Subset):
    """The test images still to do; everything else is the dataset's."""

    def __getattr__(self, key):
        if key in ('dataset', 'indices'):
            raise AttributeError(key)
        return getattr(self.dataset, key)


def remaining_loader(loader: DataLoader, indices: List[int]) -> DataLoader:
    """``loader`` over the images of ``indices`` only, in the same order,
    split across ranks like the test loop's own sampler."""
    from mmengine.dataset import DefaultSampler
    subset = _Remaining(loader.dataset, indices)
    # nothing left: an empty loader (the sampler cannot split zero images)
    sampler = DefaultSampler(subset, shuffle=False) if indices else None
    return DataLoader(subset, batch_size=loader.batch_size, sampler=sampler,
                      num_workers=loader.num_workers, collate_fn=loader.collate_fn,
                      pin_memory=loader.pin_memory, worker_init_fn=loader.worker_init_fn,
                      persistent_workers=False)


def _atomic_write(path: str, data: bytes) -> None:
    tmp = f'{path}.{os.getpid()}.tmp'
    with open(tmp, 'wb') as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
