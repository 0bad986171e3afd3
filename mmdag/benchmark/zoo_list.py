"""The model-zoo benchmark's list: a list of models, one DAG run each.

Reading the model list, deciding whether a model's run is finished, to
resume or to start, and the random-weight checkpoint of a list entry. The
runs are :mod:`mmdag.benchmark.zoo_run`'s, the rows and tables
:mod:`mmdag.benchmark.zoo_tables`'s.

A model list is an mmengine config file (``.py``, ``.json`` or ``.yaml``)
with ``models``, a list of entries, and optionally ``defaults``, merged into
every entry::

    models = [
        dict(name='fcn_r50_voc12aug',
             config='configs/dag/fcn_r50-d8_4xb4-20k_voc12aug-512x512_dag.py',
             checkpoint='https://download.openmmlab.com/...pth',
             cfg_options={'test_dataloader.dataset.data_root': 'data/VOCdevkit/VOC2012'},
             attack_options=dict(max_iters=200)),
    ]

``checkpoint`` is a file, a URL, or ``'random'`` (random weights, made once
per entry from ``seed``; a pipeline check, not a robustness figure).
"""
import hashlib
import io
import json
import os.path as osp
from typing import List

from mmdag.contract import REPORT_FILE, STATE_DIR, work_path
from mmdag.errors import MMDagError
from mmdag.fileio import write_atomic
from .zoo_entry import read_entry

#: the keys a list entry may have
ENTRY_KEYS = ('name', 'config', 'checkpoint', 'cfg_options', 'attack_options', 'seed')
RANDOM = 'random'


def load_model_list(path: str) -> List[dict]:
    """The entries of a model list, ``defaults`` merged, checked.

    Raises:
        MMDagError: a missing or unreadable file, an entry without config or
            checkpoint, an unknown key, a repeated name.
    """
    from mmengine.config import Config
    if not osp.isfile(path):
        raise MMDagError(f'model list {path} not found: pass a list file such as '
                         'configs/benchmark/voc_zoo.py or configs/benchmark/demo.py')
    try:
        cfg = Config.fromfile(path)
    except Exception as e:
        raise MMDagError(f'cannot read model list {path}: {type(e).__name__}: {e}') from None
    models = cfg.get('models', None)
    if not models:
        raise MMDagError(f'model list {path} has no `models = [dict(name=..., config=..., '
                         'checkpoint=...), ...]`')
    defaults = dict(cfg.get('defaults', None) or {})
    entries, names = [], set()
    for k, m in enumerate(models):
        m = dict(m)
        unknown = set(m) - set(ENTRY_KEYS)
        if unknown:
            raise MMDagError(f'model list {path}, entry {k}: unknown key(s) {sorted(unknown)}; '
                             f'an entry has {", ".join(ENTRY_KEYS)}')
        e = {key: _merge(defaults.get(key), m.get(key)) for key in ENTRY_KEYS}
        if not e['config'] or not e['checkpoint']:
            raise MMDagError(f'model list {path}, entry {k}: both config and checkpoint are '
                             "needed (checkpoint: a file, a URL or 'random')")
        e['name'] = str(e['name'] or osp.splitext(osp.basename(e['config']))[0])
        if not e['name'].replace('-', '').replace('_', '').replace('.', '').isalnum():
            raise MMDagError(f'model list {path}: name {e["name"]!r} must be letters, digits, '
                             "'-', '_' or '.' (it names the model's work dir)")
        if e['name'] in names:
            raise MMDagError(f'model list {path}: the name {e["name"]!r} is used twice')
        names.add(e['name'])
        e['cfg_options'] = dict(e['cfg_options'] or {})
        e['attack_options'] = dict(e['attack_options'] or {})
        e['seed'] = int(e['seed'] or 0)
        entries.append(e)
    return entries


def _merge(default, value):
    if isinstance(default, dict) and isinstance(value, dict):
        return {**default, **value}
    return value if value is not None else default


def fingerprint(entry: dict, options: dict) -> dict:
    """What a model's run depends on: the entry, the config file's content
    and the benchmark-wide options. A finished run with the same fingerprint
    is not run again."""
    sha = None
    if osp.isfile(entry['config']):
        with open(entry['config'], 'rb') as f:
            sha = hashlib.sha1(f.read()).hexdigest()[:16]
    return json.loads(json.dumps(dict(
        config=entry['config'], config_sha1=sha, checkpoint=entry['checkpoint'],
        seed=entry['seed'] if entry['checkpoint'] == RANDOM else None,
        cfg_options=entry['cfg_options'], attack_options=entry['attack_options'],
        **options), sort_keys=True, default=str))


def plan(work_dir: str, fp: dict) -> str:
    """``'skip'`` (finished with these settings), ``'resume'`` (started with
    these settings, state saved), or ``'start'``."""
    entry = read_entry(work_dir)
    same = entry.get('fingerprint') == fp
    if same and entry.get('status') == 'finished' and osp.isfile(
            work_path(work_dir, REPORT_FILE)):
        return 'skip'
    if same and osp.isfile(osp.join(work_path(work_dir, STATE_DIR), 'run.json')):
        return 'resume'
    return 'start'


def random_checkpoint(config: str, cfg_options: dict, path: str, seed: int = 0) -> str:
    """Save the model of ``config`` with random weights (pretrained
    initialisations dropped, ``init_weights`` run with mmdag's weights-only
    loaders, ``seed``) to ``path``, unless it is there; return ``path``."""
    if osp.isfile(path):
        return path
    import torch
    from mmengine.config import Config

    from mmdag.benchmark.zoo_models import _quiet, build_model
    from mmdag.checkpoint import safe_loading
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    # _quiet: the packages' import warnings; init_weights logs every tensor.
    # safe_loading: a checkpoint an init_cfg other than Pretrained still names
    # (e.g. Pretrained_Part) loads weights-only
    with _quiet(), safe_loading():
        model = build_model(cfg.get('default_scope', None) or 'mmseg', cfg, seed=seed,
                            init_weights=True)
    buffer = io.BytesIO()
    torch.save({'state_dict': model.state_dict(),
                'meta': dict(mmdag_random_weights=True, seed=seed, config=config)}, buffer)
    write_atomic(path, buffer.getvalue())
    return path
