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

from mmengine.dist import barrier, get_rank, is_main_process

from mmdag.errors import MMDagError
from mmdag.fileio import remove_temporaries, write_atomic

from .perturbations import image_names
from .records import keep_aside, records_bytes, start_records

STATE_DIR = 'dag_state'
SETTINGS = 'run.json'


def state_dir(work_dir: str) -> str:
    return osp.join(work_dir, STATE_DIR)


def start_state(work_dir: str) -> Optional[str]:
    """A new run: an existing state directory is kept aside under a dated
    name and its new path returned; nothing is deleted."""
    return keep_aside(state_dir(work_dir))


def write_settings(work_dir: str, settings: dict) -> None:
    write_atomic(osp.join(state_dir(work_dir), SETTINGS), json.dumps(settings, indent=1, sort_keys=True,
                                                   default=str))


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
    name = f'{run_id}-rank{rank}-batch{batch_idx:06d}.pkl'
    write_atomic(osp.join(state_dir(work_dir), name), pickle.dumps(entries, protocol=4))


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


class ResumableState:
    """The part of :class:`mmdag.engine.DAGAttackHook` that keeps and reads
    ``dag_state``: a new run sets the earlier files aside, a resumed one
    restores the finished images into the metrics and leaves the rest to
    the test loop; after every batch the batch's state is written."""

    def _settings(self, runner) -> dict:
        """What a resumed run must share with the run it continues."""
        return dict(attack=dict(self.dag.__dict__), targets=self.targets_cfg,
                    variants=list(self.variants), perm_seed=self.perm_seed,
                    transfer_from=self.perturbations, resize=self.resize_perturbations,
                    attack_autocast=self.attack_autocast, test_fp16=self._fp16,
                    config=osp.basename(str(getattr(runner.cfg, 'filename', None) or '')),
                    checkpoint=str(runner.cfg.get('load_from') if hasattr(runner.cfg, 'get')
                                   else None),
                    images=sorted(self._index),
                    metrics=[type(m).__name__ for m in _all_metrics(runner)])

    def _start_or_resume(self, runner) -> None:
        work_dir = runner.work_dir
        dataset = getattr(runner.test_dataloader, 'dataset', None)
        names = image_names(dataset) if dataset is not None else []
        self._index = {n: i for i, n in enumerate(names)}
        self._run_id = f'{time.strftime("%Y%m%d%H%M%S")}-{os.getpid()}'
        metrics = _all_metrics(runner)
        dag_metrics = _dag_metrics(runner)
        self._state_ok = (dataset is not None and len(self._index) == len(names)
                          and len(dag_metrics) == len(metrics) > 0)
        settings = self._settings(runner)
        records_path = self._records_path(runner)
        if not self.resume:
            if is_main_process():
                _remove_temporaries(runner)
                for kept in (start_records(records_path) if records_path else None,
                             start_state(work_dir)):
                    if kept:
                        runner.logger.info(f'DAG: the files of an earlier run kept as {kept}')
                if self._state_ok:
                    write_settings(work_dir, settings)
            barrier()   # no rank writes before the old files are aside
            return
        if not self._state_ok:
            raise MMDagError('cannot resume: every test metric must be wrapped in DAGMetric and '
                             'every test image name must be unique; rerun without resuming')
        check_settings(work_dir, settings)
        done, bad = read_state(work_dir)
        done = {n: e for n, e in done.items() if n in self._index}
        remaining = [i for i, n in enumerate(names) if n not in done]
        barrier()   # every rank has read the state before it changes
        if is_main_process():
            _remove_temporaries(runner)
            write_settings(work_dir, settings)
            if records_path:
                _rewrite_records(records_path, done)
            runner.logger.info(
                f'DAG: resuming: {len(done)} of {len(names)} images done by the earlier run, '
                f'{len(remaining)} to go' + (f' ({bad} unreadable state files skipped)' if bad
                                              else ''))
        for j, m in enumerate(dag_metrics):
            restored = {key: [(e['index'], e['results'][j][key]) for e in done.values()]
                        for key in m.result_lists()}
            m.restore(restored, remaining)
        runner.test_loop.dataloader = remaining_loader(runner.test_loop.dataloader, remaining)
        barrier()

    def _save_state(self, runner, batch_idx: int) -> None:
        n = len(self._pending)
        per_metric = []
        for m, before in zip(_dag_metrics(runner), self._counts):
            lists = m.result_lists()
            if any(len(v) - before.get(k, 0) != n for k, v in lists.items()):
                # a metric that keeps other than one result per image: no resume
                runner.logger.warning('DAG: a metric does not keep one result per image; '
                                      'this run cannot be resumed')
                self._state_ok = False
                return
            per_metric.append({k: v[len(v) - n:] for k, v in lists.items()})
        entries = [dict(name=name, index=self._index[name], record=rec,
                        results=[{k: v[k_] for k, v in pm.items()} for pm in per_metric])
                   for k_, (name, rec) in enumerate(zip(self._names, self._pending))]
        write_batch(runner.work_dir, get_rank(), batch_idx, self._run_id, entries)


def _remove_temporaries(runner) -> None:
    """The temporary files of writers killed in an earlier run (a SIGKILL
    runs no cleanup): called on rank 0 before the barrier that every rank
    passes before it writes."""
    work_dir = runner.work_dir
    n = remove_temporaries([work_dir, state_dir(work_dir), osp.join(work_dir, 'perturbations'),
                            osp.join(work_dir, 'figures')])
    if n:
        runner.logger.info(f'DAG: removed {n} temporary files left by a killed run')


def _all_metrics(runner) -> list:
    evaluator = getattr(getattr(runner, 'test_loop', None), 'evaluator', None)
    return list(getattr(evaluator, 'metrics', None) or [])


def _dag_metrics(runner) -> list:
    from mmdag.evaluation import DAGMetric
    return [m for m in _all_metrics(runner) if isinstance(m, DAGMetric)]


def _rewrite_records(path: str, done: dict) -> None:
    """The records file of a resumed run: exactly the finished images'
    records, in test-set order (a cut line of the killed run is dropped)."""
    records = [e['record'] for e in sorted(done.values(), key=lambda e: e['index'])
               if e.get('record')]
    if records:
        write_atomic(path, records_bytes(records))
    elif osp.exists(path):
        os.remove(path)
