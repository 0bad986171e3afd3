"""What an attack run keeps so that a killed run resumes: ``<work_dir>/attack_state/``.

After each batch, every rank writes one file (a temporary file renamed into
place, so a file is whole or absent) holding, per image of the batch: its
name, its index in the test set, its record (:mod:`mmdag.engine.records`)
and the per-image results of every :class:`mmdag.evaluation.AttackMetric`
(each variant's wrapped metric and the attack statistics). ``run.json``
holds the run's settings (:mod:`mmdag.engine.run_settings`: the attack's,
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
:class:`mmdag.engine.AttackResumeHook` writes and reads the state.
"""
import os
import os.path as osp
from typing import Dict, List, Optional, Tuple

from torch.utils.data import DataLoader, Subset

from mmdag.contract import OLD_FILE_NAMES, RECORDS_FILE
from mmdag.fileio import is_temporary, write_atomic
from .records import keep_aside
from .run_settings import (_AGAIN, CONFIG_PARTS, SETTINGS, STATE_DIR, _older_mmdag,  # noqa: F401
                           check_settings, checkpoint_settings, config_settings, file_sha256,
                           fingerprint, first_difference, state_dir, write_settings)
from .state_codec import STATE_FORMAT, StateTypeError, decode_state, encode_state  # noqa: F401

#: Version of the state files and of ``run.json``'s settings (``state_format``).
STATE_EXT = '.npz'
#: What state files of mmdag before :data:`STATE_FORMAT` 2 end with (pickles).
OLD_STATE_EXT = '.pkl'


def upgrade_work_dir(work_dir: str, records_path: Optional[str]) -> List[str]:
    """A work dir written by mmdag before 0.2, to be resumed: its state
    directory (``dag_state``) and, when the run keeps its records under the
    default name, its records file (``dag_records.jsonl``) get today's names
    (:data:`~mmdag.contract.OLD_FILE_NAMES`), unless files of today's names
    are there. Returns the new paths of what was renamed."""
    moved = []
    default_records = osp.normpath(osp.join(work_dir, RECORDS_FILE))
    names = [STATE_DIR] + ([RECORDS_FILE] if records_path
                           and osp.normpath(records_path) == default_records else [])
    for name in names:
        new, old = osp.join(work_dir, name), osp.join(work_dir, OLD_FILE_NAMES[name])
        if not osp.exists(new) and osp.exists(old):
            os.replace(old, new)
            moved.append(new)
    return moved


def start_state(work_dir: str) -> Optional[str]:
    """A new run: an existing state directory is kept aside under a dated
    name and its new path returned; nothing is deleted."""
    return keep_aside(state_dir(work_dir))


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
