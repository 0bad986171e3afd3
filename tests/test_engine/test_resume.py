"""A run killed part-way (SIGKILL) resumes without redoing finished images and
ends with the report of an uninterrupted run, with 1 and with 2 processes."""
import json
import os
import os.path as osp
import random
import re
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT, TINY, data_root_opts, run_tool

from mmdag.engine.records import read_records


def command(procs, checkpoint, work_dir, tiny_voc, *extra):
    # random weights and the clean prediction as labels; gamma 0.05 never empties
    # the active set in 200 iterations: a few seconds per image, time to kill
    opts = ['--attack', 'dag', '--attack-options', 'max_iters=200', 'gamma=0.05',
            '--cfg-options', *data_root_opts(tiny_voc), 'test_dataloader.batch_size=1',
            'custom_hooks.0.targets.use_gt=False']
    launch = []
    if procs > 1:
        launch = ['-m', 'torch.distributed.run', f'--nproc_per_node={procs}',
                  f'--master_port={random.randint(20000, 40000)}']
    tool = ['tools/test.py', TINY, checkpoint, '--work-dir', work_dir, *extra, *opts]
    return launch + tool + (['--launcher', 'pytorch'] if procs > 1 else [])


def kill_all(pid):
    """SIGKILL a launcher and every process under it, as a pre-emption does
    (torchrun starts its workers in sessions of their own)."""
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        out = subprocess.run(['ps', '--ppid', str(p), '-o', 'pid='], capture_output=True,
                             text=True).stdout.split()
        todo += [int(c) for c in out]
    for p in tree:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


def report(work_dir):
    with open(osp.join(work_dir, 'dag_report.json')) as f:
        return json.load(f)


@pytest.mark.slow
@pytest.mark.parametrize('procs', [1, 2])
def test_killed_run_resumes_to_the_report_of_an_uninterrupted_run(procs, tiny_voc,
                                                                  random_seg_checkpoint,
                                                                  tmp_path):
    full, cut = str(tmp_path / 'full'), str(tmp_path / 'cut')
    run_tool(command(procs, random_seg_checkpoint, full, tiny_voc))

    env = dict(os.environ, PYTHONWARNINGS='ignore')
    proc = subprocess.Popen([sys.executable, *command(procs, random_seg_checkpoint, cut, tiny_voc)],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    records = osp.join(cut, 'dag_records.jsonl')
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if len(read_records(records)[0]) >= 2:
                break
            time.sleep(0.2)
        assert proc.poll() is None, 'the run ended before the kill'
        kill_all(proc.pid)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            kill_all(proc.pid)
            proc.wait()
    assert not osp.exists(osp.join(cut, 'dag_report.json'))
    done_before = {r['image'] for r in read_records(records)[0]}
    assert 2 <= len(done_before) < 6

    # a writer killed inside a write leaves a hidden temporary (one is planted
    # here, the kill may have left more): the resumed run removes them
    planted = osp.join(cut, 'dag_state', '.x-rank0-batch000009.pkl.k2j4_x.tmp')
    with open(planted, 'wb') as f:
        f.write(b'partial')
    res = run_tool(command(procs, random_seg_checkpoint, cut, tiny_voc, '--resume'))
    log = res.stdout + res.stderr
    assert not osp.exists(planted)
    assert re.search(r'removed \d+ temporary files left by a killed run', log), log[-3000:]
    from mmdag.fileio import is_temporary
    assert not [n for _, _, names in os.walk(cut) for n in names if is_temporary(n)]
    m = re.search(r'resuming: (\d+) of 6 images done by the earlier run, (\d+) to go', log)
    assert m, log[-3000:]
    assert int(m.group(1)) >= len(done_before) and int(m.group(1)) + int(m.group(2)) == 6
    # the finished images were not attacked again: one 'DAG batch' summary per new batch
    a, b = report(full), report(cut)
    assert b['variants'] == a['variants']
    assert b['attack'] == a['attack']
    assert b['convergence'] == a['convergence']
    assert b['records'] == a['records'] == dict(file='dag_records.jsonl', images=6,
                                                skipped_lines=0)
    keyed = {r['image']: r for r in read_records(osp.join(full, 'dag_records.jsonl'))[0]}
    for r in read_records(records)[0]:
        for k in ('iters', 'p', 'linf', 'correct_frac', 'trace', 'forwards', 'backwards'):
            assert r[k] == keyed[r['image']][k], (r['image'], k)


@pytest.mark.slow
def test_resume_refuses_other_settings(tiny_voc, random_seg_checkpoint, tmp_path):
    wd = str(tmp_path / 'wd')
    base = ['tools/test.py', TINY, random_seg_checkpoint, '--work-dir', wd, '--attack', 'dag',
            '--cfg-options', *data_root_opts(tiny_voc), 'test_dataloader.dataset.indices=2',
            'custom_hooks.0.targets.use_gt=False']
    run_tool(base + ['--attack-options', 'max_iters=2'])
    res = run_tool(base + ['--attack-options', 'max_iters=3', '--resume'], check=False)
    assert res.returncode != 0
    assert 'cannot resume' in res.stderr + res.stdout and 'max_iters' in res.stderr + res.stdout
    # the same settings again: everything was done, nothing is attacked
    res = run_tool(base + ['--attack-options', 'max_iters=2', '--resume'])
    assert 'resuming: 2 of 2 images done by the earlier run, 0 to go' in res.stdout + res.stderr
    assert report(wd)['attack']['images'] == 2
