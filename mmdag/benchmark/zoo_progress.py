"""The zoo benchmark's progress on the console: a bar over the images of the
running model and one over the models (rich), and :class:`RunProgress`,
which counts the images a running model has finished from its work dir."""
import json
import os
import os.path as osp
from typing import Optional, Tuple

from mmdag.contract import RECORDS_FILE, STATE_DIR


class Progress:
    """A bar over the images of the running model and one over the models,
    each with its ETA (rich), and a line per finished model."""

    def __init__(self, n_models: int):
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)
        self.console = Console(stderr=True)
        self.bars = Progress(TextColumn('{task.description:<34}'), BarColumn(),
                             MofNCompleteColumn(), TimeElapsedColumn(), TextColumn('ETA'),
                             TimeRemainingColumn(), console=self.console, transient=False)
        self.models = self.bars.add_task('models', total=n_models)
        self.images = None

    def __enter__(self):
        self.bars.start()
        return self

    def __exit__(self, *exc):
        self.bars.stop()

    def start_model(self, name: str):
        if self.images is not None:
            self.bars.remove_task(self.images)
        self.images = self.bars.add_task(f'  images of {name}'[:34], total=None)

    def update_images(self, done: int, total):
        self.bars.update(self.images, completed=done, total=total)

    def end_model(self):
        self.bars.advance(self.models)

    def line(self, text: str):
        self.bars.console.print(text, highlight=False, markup=False, soft_wrap=True)


class RunProgress:
    """(images finished, images of the run or None before the run has said)
    of a running model, from its records and ``attack_state/run.json``. Polled
    every half second for hours, it reads only what the records file gained
    since the last poll (anew when the file was replaced), and ``run.json``
    only when it changed."""

    def __init__(self, work_dir: str):
        self.records = osp.join(work_dir, RECORDS_FILE)
        self.settings = osp.join(work_dir, STATE_DIR, 'run.json')
        self.total = None
        self._settings_mtime = None
        self._file = None   # (inode, bytes read)
        self._lines = 0

    def poll(self) -> Tuple[int, Optional[int]]:
        try:
            mtime = os.stat(self.settings).st_mtime_ns
            if mtime != self._settings_mtime:
                with open(self.settings) as f:
                    self.total = len(json.load(f).get('images') or []) or None
                self._settings_mtime = mtime
        except (OSError, ValueError, AttributeError):
            pass
        try:
            st = os.stat(self.records)
            inode, offset = self._file or (None, 0)
            if inode != st.st_ino or st.st_size < offset:   # a new file (a new or resumed run)
                offset, self._lines = 0, 0
            with open(self.records, 'rb') as f:
                f.seek(offset)
                data = f.read()
            self._lines += data.count(b'\n')
            self._file = (st.st_ino, offset + len(data))
        except OSError:
            self._file, self._lines = None, 0
        done = self._lines
        return (min(done, self.total) if self.total else done), self.total
