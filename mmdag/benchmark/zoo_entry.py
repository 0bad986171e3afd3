"""The ``zoo_entry.json`` of a model's work dir: what the zoo benchmark ran
there and how it ended (read by the run and by its tables)."""
import json
import os.path as osp

from mmdag.fileio import write_atomic

#: the file in each model's work dir that says what was run and how it ended
ENTRY_FILE = 'zoo_entry.json'


def read_entry(work_dir: str) -> dict:
    """The ``zoo_entry.json`` of a model's work dir ({} when none or unreadable)."""
    try:
        with open(osp.join(work_dir, ENTRY_FILE)) as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def write_entry(work_dir: str, data: dict) -> None:
    write_atomic(osp.join(work_dir, ENTRY_FILE), json.dumps(data, indent=2, sort_keys=True))
