"""Atomic writes: a writer killed mid-write leaves only a hidden temporary
file, never a partial file under the real name, and the next run clears it."""
import os
import subprocess
import sys

from mmdag.fileio import is_temporary, remove_temporaries, write_atomic
from conftest import ROOT

# a writer SIGKILLed after its data is on disk but before the rename: the
# worst moment (no Python cleanup runs)
KILLED_WRITER = '''
import os, signal, sys
import mmdag.fileio as fio
fio.os.replace = lambda a, b: os.kill(os.getpid(), signal.SIGKILL)
fio.write_atomic(sys.argv[1], b'new data')
'''


def test_a_killed_writer_leaves_the_old_file_and_a_temporary_that_is_removed(tmp_path):
    path = tmp_path / 'state.pkl'
    write_atomic(str(path), b'old data')
    (tmp_path / '.keep').write_text('mine')         # hidden, not a temporary
    (tmp_path / 'notes.tmp').write_text('mine')     # not hidden
    res = subprocess.run([sys.executable, '-c', KILLED_WRITER, str(path)], cwd=ROOT)
    assert res.returncode == -9
    assert path.read_bytes() == b'old data'
    left = [n for n in os.listdir(tmp_path) if is_temporary(n)]
    assert len(left) == 1 and left[0].startswith('.state.pkl.'), os.listdir(tmp_path)
    assert (tmp_path / left[0]).read_bytes() == b'new data'
    assert remove_temporaries([str(tmp_path), str(tmp_path / 'missing')]) == 1
    assert sorted(os.listdir(tmp_path)) == ['.keep', 'notes.tmp', 'state.pkl']


def test_write_atomic_keeps_the_mode_and_leaves_nothing_else(tmp_path):
    path = tmp_path / 'report.json'
    write_atomic(str(path), 'one')
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)
    os.chmod(path, 0o600)
    write_atomic(str(path), 'two')
    assert path.read_text() == 'two' and oct(path.stat().st_mode & 0o777) == oct(0o600)
    assert os.listdir(tmp_path) == ['report.json']
