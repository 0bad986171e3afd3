"""What a DAG run keeps so that a killed run resumes: ``<work_dir>/dag_state/``.

After each batch, every rank writes one file (a temporary file renamed into
place, so a file is whole or absent) holding, per image of the batch: its
name, its index in the test set, its record (:mod:`mmdag.engine.records`)
and the per-image results of every :class:`mmdag.evaluation.DAGMetric`
(each variant's wrapped metric and the attack statistics). ``run.json``
holds the run's settings (:meth:`ResumableState._settings`: the attack's,
the parts of the resolved config that decide the numbers, the checkpoint's
content hash); a resumed run must have the same, or it is refused in one
line naming the first setting that differs.

A state file cannot run code when read (a work dir may come from someone
else): ``<run>-rank<r>-batch<i>.npz`` holds a JSON tree and the arrays it
refers to, read with ``allow_pickle=False`` (:mod:`mmdag.engine.state_codec`).
A result of another type is refused when written (the run is then not
resumable, and says so). State files of older mmdag versions (pickles,
``.pkl``) are refused, never read.

A resumed run attacks only the images without a state entry, then evaluates
every metric on the saved and the new per-image results in test-set order,
which is the order of an uninterrupted run: the report is the same.
"""
import hashlib
import inspect
import json
import math
import os
import os.path as osp
import re
import time
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from mmengine.dist import barrier, broadcast_object_list, get_rank, is_main_process

from mmdag.errors import MMDagError
from mmdag.fileio import is_temporary, remove_temporaries, write_atomic

from .perturbations import image_names
from .records import keep_aside, records_bytes, start_records
from .state_codec import STATE_FORMAT, StateTypeError, decode_state, encode_state  # noqa: F401

STATE_DIR = 'dag_state'
SETTINGS = 'run.json'
#: Version of the state files and of ``run.json``'s settings (``state_format``).
STATE_EXT = '.npz'
#: What state files of mmdag before :data:`STATE_FORMAT` 2 end with (pickles).
OLD_STATE_EXT = '.pkl'
_AGAIN = 'rerun without --resume, or use another --work-dir'


def state_dir(work_dir: str) -> str:
    return osp.join(work_dir, STATE_DIR)


def start_state(work_dir: str) -> Optional[str]:
    """A new run: an existing state directory is kept aside under a dated
    name and its new path returned; nothing is deleted."""
    return keep_aside(state_dir(work_dir))


# --------------------------------------------------------------- settings

#: The parts of the resolved config (after ``--cfg-options``) that decide a
#: run's numbers, compared leaf by leaf when a run is resumed:
#:
#: - ``model`` (with its ``data_preprocessor`` and ``test_cfg``);
#: - ``test_dataloader.dataset`` (type, data root and prefixes, annotation
#:   file, ``indices``, metainfo and the test ``pipeline``);
#: - ``test_evaluator``, each metric's arguments completed with its class's
#:   defaults (``DAGMetric``'s and the wrapped metric's, e.g. IoUMetric's
#:   ``ignore_index`` 255), so that setting a default explicitly is no change
#:   (``--out``'s ``output_dir`` too: the killed run wrote its images there);
#: - ``test_cfg`` (the test loop, ``fp16``) and ``default_scope`` (what the
#:   type names mean).
#:
#: The DAG hook's settings are compared as the hook holds them (``attack``,
#: ``targets``, ``variants``...; see ``ResumableState._settings``), and the
#: checkpoint by the SHA-256 of the file that was loaded (:func:`checkpoint_settings`).
#:
#: Left out, because they legitimately differ between a killed run and its
#: resumption, or do not change the numbers: ``work_dir``, ``launcher``,
#: ``model_wrapper_cfg`` and ``env_cfg`` (another number of processes, another
#: machine: a distributed CPU run sets both), ``load_from`` as a string (the
#: file's content hash stands for it: a checkpoint copied elsewhere resumes,
#: a retrained one at the same path does not), the hook's ``resume``,
#: ``num_figures``, ``save_perturbations``, ``report``, ``records`` and
#: ``log_interval``, the ``CheckpointCheckHook``'s options (how the file is
#: loaded, not what it holds), ``custom_imports``, ``default_hooks`` (logger
#: interval, checkpoint and visualization hooks), ``log_level``,
#: ``log_processor``, ``visualizer``, ``randomness`` (the attack draws from
#: its own ``seed`` and ``perm_seed``, which are compared), the test
#: dataloader's ``batch_size``, ``num_workers``, ``sampler``, ``pin_memory``
#: and ``persistent_workers`` (an image's numbers do not depend on its batch
#: companions, see :mod:`mmdag.targets.batching`, and the resumed run splits
#: the images over its own ranks), and everything of training and validation.
CONFIG_PARTS = ('default_scope', 'model', 'test_dataloader.dataset', 'test_evaluator',
                'test_cfg')

#: Keys of the settings not compared leaf by leaf (see :func:`check_settings`).
_META = ('state_format', 'fingerprint')


def config_settings(cfg, metrics: Optional[list] = None) -> dict:
    """The :data:`CONFIG_PARTS` of ``cfg`` as plain JSON values, each metric
    of ``test_evaluator`` completed with its class's defaults (``metrics``:
    the built metrics, in the evaluator's order; without them, only what
    the config says)."""
    out = {}
    for part in CONFIG_PARTS:
        value = cfg
        for key in part.split('.'):
            value = value.get(key, None) if hasattr(value, 'get') else None
        if part == 'test_evaluator' and value is not None and metrics:
            value = _evaluator_arguments(value, metrics)
        head, _, rest = part.partition('.')
        if rest:
            out.setdefault(head, {})[rest] = _canonical(value)
        else:
            out[head] = _canonical(value)
    return out


def _evaluator_arguments(evaluator, metrics: list):
    items = list(evaluator) if isinstance(evaluator, (list, tuple)) else [evaluator]
    if len(items) != len(metrics):
        return evaluator
    filled = [_with_defaults(c, m) for c, m in zip(items, metrics)]
    return filled if isinstance(evaluator, (list, tuple)) else filled[0]


def _with_defaults(cfg, metric):
    """``cfg`` (a metric's config) with the defaults of ``metric``'s class
    for the arguments it does not set; a ``DAGMetric``'s ``metric`` too."""
    kind = cfg.get('type', '') if isinstance(cfg, dict) else None
    kind = kind.__name__ if isinstance(kind, type) else str(kind).rsplit('.', 1)[-1]
    if kind != type(metric).__name__:
        return cfg
    out = dict(cfg)
    try:
        params = inspect.signature(type(metric).__init__).parameters.values()
    except (TypeError, ValueError):
        params = []
    for p in params:
        if (p.name != 'self' and p.default is not p.empty
                and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)):
            out.setdefault(p.name, p.default)
    inner = getattr(metric, 'metrics', None)   # DAGMetric: one wrapped metric per variant
    if isinstance(out.get('metric'), dict) and isinstance(inner, dict) and inner:
        out['metric'] = _with_defaults(out['metric'], next(iter(inner.values())))
    return out


def _canonical(value):
    """A config value as plain JSON: dicts with sorted string keys, tuples as
    lists, classes and functions by their qualified names, NaN / inf as
    strings (NaN would differ from itself), anything else by its ``repr``
    without memory addresses."""
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, np.generic):
        return _canonical(value.item())
    if isinstance(value, np.ndarray):
        return _canonical(value.tolist())
    if isinstance(value, (type, torch.dtype)) or callable(value):
        name = getattr(value, '__qualname__', None) or getattr(value, '__name__', None)
        module = getattr(value, '__module__', None)
        if name:
            return f'{module}.{name}' if module else name
    return re.sub(r' at 0x[0-9a-fA-F]+', '', repr(value))


def checkpoint_file(load_from) -> Optional[str]:
    """The local file a run's ``load_from`` was loaded from: the path, or
    for an http(s) URL the file in torch's hub cache where
    :func:`mmdag.checkpoint.load_checkpoint_url` put it; None when there is
    no such file (another scheme)."""
    if not load_from:
        return None
    name = str(load_from)
    if name.startswith(('http://', 'https://')):
        from urllib.parse import urlparse

        from torch.hub import get_dir
        path = osp.join(get_dir(), 'checkpoints', osp.basename(urlparse(name).path))
    else:
        path = osp.expanduser(name)
    return path if osp.isfile(path) else None


def file_sha256(path: str) -> str:
    """SHA-256 of a file, read in 4 MiB blocks (memory stays flat). A run
    hashes its checkpoint once, on rank 0, when it starts, right after
    loading it (so the file is in the page cache): about 0.12 s per 100 MB
    on one CPU core, 0.1-0.4 s for a 100-300 MB zoo checkpoint."""
    h = hashlib.sha256()
    block = bytearray(4 << 20)
    view = memoryview(block)
    with open(path, 'rb', buffering=0) as f:
        while True:
            n = f.readinto(block)
            if not n:
                break
            h.update(view[:n])
    return h.hexdigest()


def checkpoint_settings(load_from) -> Optional[dict]:
    """The checkpoint as a resumed run must share it: the SHA-256 of the
    loaded file; its name when no local file is known; None without one."""
    if not load_from:
        return None
    path = checkpoint_file(load_from)
    if path is None:
        return dict(name=str(load_from))
    return dict(sha256=file_sha256(path))


def _json_settings(settings: dict) -> dict:
    """``settings`` as ``run.json`` holds them (tuples as lists...)."""
    return json.loads(json.dumps(settings, sort_keys=True, default=str))


def fingerprint(settings: dict) -> str:
    """SHA-256 of the canonical dump of the compared settings."""
    compared = {k: v for k, v in _json_settings(settings).items() if k not in _META}
    return hashlib.sha256(json.dumps(compared, sort_keys=True, separators=(',', ':'))
                          .encode()).hexdigest()


def write_settings(work_dir: str, settings: dict) -> None:
    settings = dict(_json_settings(settings), state_format=STATE_FORMAT)
    settings['fingerprint'] = fingerprint(settings)
    write_atomic(osp.join(state_dir(work_dir), SETTINGS),
                 json.dumps(settings, indent=1, sort_keys=True))


_ABSENT = object()


def first_difference(saved, now, path: str = ''):
    """``(leaf path, saved value, new value)`` of the first difference of
    two JSON values (dict keys in sorted order, list items in order; a
    missing key or item is :data:`_ABSENT`; a list of plain values, e.g. a
    scale, is one leaf), or None when they are equal."""
    if isinstance(saved, dict) and isinstance(now, dict):
        for k in sorted(set(saved) | set(now), key=str):
            sub = f'{path}.{k}' if path else str(k)
            if k not in saved or k not in now:
                return sub, saved.get(k, _ABSENT), now.get(k, _ABSENT)
            found = first_difference(saved[k], now[k], sub)
            if found:
                return found
        return None
    if isinstance(saved, list) and isinstance(now, list) and any(
            isinstance(v, (dict, list)) for v in saved + now):
        for i in range(max(len(saved), len(now))):
            sub = f'{path}.{i}' if path else str(i)
            if i >= len(saved) or i >= len(now):
                return (sub, saved[i] if i < len(saved) else _ABSENT,
                        now[i] if i < len(now) else _ABSENT)
            found = first_difference(saved[i], now[i], sub)
            if found:
                return found
        return None
    return None if saved == now and type(saved) is type(now) else (path, saved, now)


def _show(value, width: int = 70) -> str:
    text = 'absent' if value is _ABSENT else repr(value)
    return text if len(text) <= width else text[:width - 3] + '...'


def _older_mmdag(d: str) -> MMDagError:
    return MMDagError(f'cannot resume: {d} was written by an older mmdag (pickled state files, '
                      f'which cannot be read safely): {_AGAIN}')


def check_settings(work_dir: str, settings: dict) -> None:
    """Refuse to resume a run made with other settings, in one line naming
    the first setting that differs and, inside it, the first leaf."""
    d = state_dir(work_dir)
    path = osp.join(d, SETTINGS)
    if not osp.isfile(path):
        return
    try:
        with open(path) as f:
            saved = json.load(f)
        if not isinstance(saved, dict):
            raise ValueError('not an object')
    except (OSError, ValueError) as e:
        raise MMDagError(f'cannot resume: {path} cannot be read ({e}): {_AGAIN}') from None
    if saved.get('state_format') is None:
        raise _older_mmdag(d)
    if saved.get('state_format') != STATE_FORMAT:
        raise MMDagError(f"cannot resume: {d} holds state format {saved.get('state_format')!r}, "
                         f'this mmdag reads {STATE_FORMAT}: {_AGAIN}')
    now = _json_settings(settings)
    for key in sorted((set(saved) | set(now)) - set(_META)):
        found = first_difference(saved.get(key, _ABSENT), now.get(key, _ABSENT))
        if found:
            leaf, old, new = found
            what = (f'{leaf}: ' if leaf else '') + f'{_show(old)}, now {_show(new)}'
            raise MMDagError(f'cannot resume: {d} holds a run with another {key} ({what}): '
                             f'{_AGAIN}')
    if saved.get('fingerprint') != fingerprint(now):   # a file edited by hand
        raise MMDagError(f'cannot resume: {path} does not match its fingerprint: {_AGAIN}')


# ------------------------------------------------------------ state files

def write_batch(work_dir: str, rank: int, batch_idx: int, run_id: str, entries: List[dict]):
    """Write a batch's entries; :class:`StateTypeError` (nothing written) when
    a value is of a type the state cannot hold."""
    name = f'{run_id}-rank{rank}-batch{batch_idx:06d}{STATE_EXT}'
    write_atomic(osp.join(state_dir(work_dir), name), encode_state(entries))


def _entries(obj) -> list:
    if not isinstance(obj, list) or not all(
            isinstance(e, dict) and isinstance(e.get('name'), str) and type(e.get('index')) is int
            and isinstance(e.get('results'), list) for e in obj):
        raise ValueError('not a list of state entries')
    return obj


def read_state(work_dir: str) -> Tuple[Dict[str, dict], int]:
    """Finished images by name, and the number of state files that could
    not be read (skipped: their images are attacked again). A state
    directory with pickled files of an older mmdag is refused
    (:class:`MMDagError`), never unpickled."""
    d = state_dir(work_dir)
    done, bad = {}, 0
    if not osp.isdir(d):
        return done, bad
    names = sorted(n for n in os.listdir(d) if not is_temporary(n))
    if any(n.endswith(OLD_STATE_EXT) for n in names):
        raise _older_mmdag(d)
    for name in names:
        if not name.endswith(STATE_EXT):
            continue
        try:
            entries = _entries(decode_state(osp.join(d, name)))
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
        """What a resumed run must share with the run it continues: the
        hook's settings, the images, the metrics, the parts of the resolved
        config that decide the numbers (:data:`CONFIG_PARTS`) and the
        checkpoint's content (hashed on rank 0 only). Called on every rank."""
        cfg = runner.cfg
        load_from = cfg.get('load_from', None) if hasattr(cfg, 'get') else None
        checkpoint = [checkpoint_settings(load_from) if is_main_process() else None]
        broadcast_object_list(checkpoint)
        metrics = _all_metrics(runner)
        return dict(attack=self.dag.settings(), targets=self.targets_cfg,
                    variants=list(self.variants), perm_seed=self.perm_seed,
                    transfer_from=self.perturbations, resize=self.resize_perturbations,
                    attack_autocast=self.attack_autocast, test_fp16=self._fp16,
                    checkpoint=checkpoint[0],
                    images=sorted(self._index),
                    metrics=[type(m).__name__ for m in metrics],
                    **(config_settings(cfg, metrics) if hasattr(cfg, 'get') else {}))

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
        # the same on every rank: the settings' checkpoint hash is a collective
        settings = self._settings(runner) if self._state_ok else None
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
                             'every test image name must be unique; rerun without --resume')
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
        try:
            write_batch(runner.work_dir, get_rank(), batch_idx, self._run_id, entries)
        except StateTypeError as e:
            # a metric keeping, e.g., its own objects: no resume (state files are data only)
            runner.logger.warning(f'DAG: a per-image result the resume state cannot hold '
                                  f'({e}); this run cannot be resumed')
            self._state_ok = False


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
