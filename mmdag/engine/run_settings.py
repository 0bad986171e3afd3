"""A run's settings, as a resumed run compares them: ``<work_dir>/attack_state/run.json``.

A resumed run must have the settings of the run it continues, or it is
refused in one line naming the first setting that differs
(:func:`check_settings`).
"""
import hashlib
import inspect
import json
import math
import os.path as osp
import re
from typing import Optional

import numpy as np
import torch

from mmdag.contract import STATE_DIR, upgrade_type_name
from mmdag.errors import MMDagError
from mmdag.fileio import write_atomic
from .state_codec import STATE_FORMAT

SETTINGS = 'run.json'
_AGAIN = 'rerun without --resume, or use another --work-dir'


def state_dir(work_dir: str) -> str:
    return osp.join(work_dir, STATE_DIR)


#: The parts of the resolved config (after ``--cfg-options``) that decide a
#: run's numbers, compared leaf by leaf when a run is resumed:
#:
#: - ``model`` (with its ``data_preprocessor`` and ``test_cfg``);
#: - ``test_dataloader.dataset`` (type, data root and prefixes, annotation
#:   file, ``indices``, metainfo and the test ``pipeline``);
#: - ``test_evaluator``, each metric's arguments completed with its class's
#:   defaults (``AttackMetric``'s and the wrapped metric's, e.g. IoUMetric's
#:   ``ignore_index`` 255), so that setting a default explicitly is no change
#:   (``--out``'s ``output_dir`` too: the killed run wrote its images there);
#: - ``test_cfg`` (the test loop, ``fp16``) and ``default_scope`` (what the
#:   type names mean).
#:
#: The attack hook's settings are compared as the hook holds them (``attack``,
#: ``targets``, ``variants``...; see ``AttackResumeHook._settings``), and the
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
    for the arguments it does not set; a ``AttackMetric``'s ``metric`` too."""
    kind = cfg.get('type', '') if isinstance(cfg, dict) else None
    kind = (kind.__name__ if isinstance(kind, type)
            else upgrade_type_name(str(kind)).rsplit('.', 1)[-1])
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
    inner = getattr(metric, 'metrics', None)   # AttackMetric: one wrapped metric per variant
    if isinstance(out.get('metric'), dict) and isinstance(inner, dict) and inner:
        out['metric'] = _with_defaults(out['metric'], next(iter(inner.values())))
    return out


def _canonical(value):
    """A config value as plain JSON: dicts with sorted string keys, tuples as
    lists, classes and functions by their qualified names, NaN / inf as
    strings (NaN would differ from itself), mmdag's type names before 0.2 as
    today's (``'mmdag.DAGMetric'`` is ``'mmdag.AttackMetric'``), anything
    else by its ``repr`` without memory addresses."""
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, str):
        return upgrade_type_name(value)
    if value is None or isinstance(value, (bool, int)):
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
    raw, saved = saved, _canonical(saved)   # a run of an mmdag before 0.2: today's type names
    now = _json_settings(settings)
    # a sweep's budgets first: they decide every other epsilon's settings
    # (the step scales with the budget), which would otherwise be named
    old_eps = (saved.get('attack') or {}).get('epsilons') if isinstance(
        saved.get('attack'), dict) else None
    new_eps = (now.get('attack') or {}).get('epsilons') if isinstance(
        now.get('attack'), dict) else None
    if old_eps != new_eps:
        raise MMDagError(f'cannot resume: {d} holds a run with other epsilons ({_show(old_eps)}, '
                         f'now {_show(new_eps)}): {_AGAIN}')
    for key in sorted((set(saved) | set(now)) - set(_META)):
        found = first_difference(saved.get(key, _ABSENT), now.get(key, _ABSENT))
        if found:
            leaf, old, new = found
            what = (f'{leaf}: ' if leaf else '') + f'{_show(old)}, now {_show(new)}'
            raise MMDagError(f'cannot resume: {d} holds a run with another {key} ({what}): '
                             f'{_AGAIN}')
    if raw.get('fingerprint') != fingerprint(raw):   # a file edited by hand
        raise MMDagError(f'cannot resume: {path} does not match its fingerprint: {_AGAIN}')
