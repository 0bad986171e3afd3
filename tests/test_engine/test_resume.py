"""A run killed part-way (SIGKILL) resumes without redoing finished images and
ends with the report of an uninterrupted run, with 1 and with 2 processes,
and when a run killed with 2 processes resumes with 1."""
import json
import os
import os.path as osp
import random
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from mmdag.engine.records import NOT_ATTACKED, read_records, unique_records
from mmdag.engine.resume import read_state
from conftest import ROOT, TINY, data_root_opts, run_tool


@pytest.fixture(scope='module')
def attackable_seg_checkpoint(random_seg_checkpoint, tmp_path_factory):
    """The random-weight demo segmentor with its classifier's bias set to 0.
    With the bias the random model's logits hardly depend on the image: it
    predicts one class everywhere and DAG flips no target (ORIG = ADVR =
    PERM). Without it the prediction follows the image's features and 200
    steps of gamma 0.05 flip about a third of the targets of an image,
    without emptying the active set."""
    ck = torch.load(random_seg_checkpoint, map_location='cpu', weights_only=True)
    ck['state_dict']['decode_head.conv_seg.bias'].zero_()
    path = osp.join(str(tmp_path_factory.mktemp('ckpt')), 'attackable_seg.pth')
    torch.save(ck, path)
    return path


#: One thread per process (torchrun gives its workers one): the killed, the
#: resumed and the uninterrupted run compute with the same threads, so their
#: floats agree bit for bit (why threads matter: :func:`resume_with_one_process`).
ONE_THREAD = dict(OMP_NUM_THREADS='1')


def command(procs, checkpoint, work_dir, tiny_voc, *extra):
    # the clean prediction as labels; gamma 0.05 never empties the active set
    # in 200 iterations: a few seconds per image, time to kill
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
    with open(osp.join(work_dir, 'attack_report.json')) as f:
        return json.load(f)


def kill_after_two_images(procs, checkpoint, work_dir, tiny_voc):
    """Start a run and SIGKILL it once 2 images are recorded; the images
    recorded before the kill."""
    env = dict(os.environ, PYTHONWARNINGS='ignore', **ONE_THREAD)
    proc = subprocess.Popen([sys.executable, *command(procs, checkpoint, work_dir, tiny_voc)],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    records = osp.join(work_dir, 'attack_records.jsonl')
    try:
        deadline = time.monotonic() + 600   # a slow or busy machine: minutes
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
    assert not osp.exists(osp.join(work_dir, 'attack_report.json'))
    return {r['image'] for r in read_records(records)[0]}


def resumed_counts(log):
    m = re.search(r'resuming: (\d+) of 6 images done by the earlier run, (\d+) to go', log)
    assert m, log[-3000:]
    return int(m.group(1)), int(m.group(2))


RECORD_KEYS = ('iters', 'p', 'linf', 'correct_frac', 'trace', 'forwards', 'backwards',
               'num_targets', 'num_correct', 'status')


@pytest.mark.slow
@pytest.mark.parametrize('procs', [1, 2])
def test_killed_run_resumes_to_the_report_of_an_uninterrupted_run(procs, tiny_voc,
                                                                  attackable_seg_checkpoint,
                                                                  tmp_path):
    checkpoint = attackable_seg_checkpoint
    full, cut = str(tmp_path / 'full'), str(tmp_path / 'cut')
    run_tool(command(procs, checkpoint, full, tiny_voc), env=ONE_THREAD)
    a = report(full)
    full_records = unique_records(read_records(osp.join(full, 'attack_records.jsonl'))[0])
    keyed = {r['image']: r for r in full_records}
    # the attack did something, so that "the same report" says something
    assert len(full_records) == 6
    for r in full_records:
        assert r['status'] not in NOT_ATTACKED and r['num_targets'] > 0, r['image']
        assert r['iters'] > 0 and 0 < r['correct_frac'] < 1, r['image']
    assert a['attack']['target_success'] > 0.05
    assert a['variants']['advr'] != a['variants']['orig']

    recorded = kill_after_two_images(procs, checkpoint, cut, tiny_voc)
    assert 2 <= len(recorded) < 6
    # an image is finished once its state is written, just after its record:
    # the kill may fall between the two for the batch (one image) each rank
    # was finishing, and the resumed run attacks such an image again
    done_before = set(read_state(cut)[0])
    assert done_before <= recorded and len(recorded - done_before) <= procs
    if procs == 2:   # the same killed run, resumed below with 1 process
        other = str(tmp_path / 'cut_resumed_by_1')
        shutil.copytree(cut, other)

    # a writer killed inside a write leaves a hidden temporary (one is planted
    # here, the kill may have left more): the resumed run removes them
    planted = osp.join(cut, 'attack_state', '.x-rank0-batch000009.npz.k2j4_x.tmp')
    with open(planted, 'wb') as f:
        f.write(b'partial')
    res = run_tool(command(procs, checkpoint, cut, tiny_voc, '--resume'), env=ONE_THREAD)
    log = res.stdout + res.stderr
    assert not osp.exists(planted)
    assert re.search(r'removed \d+ temporary files left by a killed run', log), log[-3000:]
    from mmdag.fileio import is_temporary
    assert not [n for _, _, names in os.walk(cut) for n in names if is_temporary(n)]
    done, todo = resumed_counts(log)
    assert done == len(done_before) and done + todo == 6
    # the finished images were not attacked again: one 'attack batch' summary per new batch
    b = report(cut)
    assert b['variants'] == a['variants']
    assert b['attack'] == a['attack']
    assert b['convergence'] == a['convergence']
    assert b['records'] == a['records'] == dict(file='attack_records.jsonl', images=6,
                                                skipped_lines=0)
    for r in read_records(osp.join(cut, 'attack_records.jsonl'))[0]:
        for k in RECORD_KEYS:
            assert r[k] == keyed[r['image']][k], (r['image'], k)
    if procs == 2:
        resume_with_one_process(other, checkpoint, tiny_voc, a, keyed)


def resume_with_one_process(work_dir, checkpoint, tiny_voc, full_report, full_records):
    """A run killed with 2 processes, resumed with 1: the same records and
    report as the uninterrupted 2-process run, bit for bit.

    The attack of an image is the same computation in both (a batch of one
    image, its own canvas) and, with one thread in each process, the same
    floats: torchrun gives its workers one thread, so the single process gets
    one too. With other threads it is not the same computation: CPU kernels
    split their sums by thread, and over 200 steps a last-bit difference
    flips a pixel near a decision boundary a step earlier or later. Measured
    on a 2-core CPU (the records of one process with 1 and with 2 threads, 6
    images, 200 steps of gamma 0.05): ``p`` differed by up to 1% and
    ``correct_frac`` by up to 0.2 percentage points. That is the machine's
    arithmetic, not resumption's, so it is held equal here."""
    restored = set(read_state(work_dir)[0])
    res = run_tool(command(1, checkpoint, work_dir, tiny_voc, '--resume'), env=ONE_THREAD)
    done, todo = resumed_counts(res.stdout + res.stderr)
    assert done == len(restored) and todo == 6 - done > 0
    records = read_records(osp.join(work_dir, 'attack_records.jsonl'))[0]
    assert sorted(r['image'] for r in records) == sorted(full_records)
    for r in records:   # restored or attacked again: the same bits
        want = full_records[r['image']]
        assert {k: r[k] for k in RECORD_KEYS} == {k: want[k] for k in RECORD_KEYS}, r['image']
    b, a = report(work_dir), full_report
    env = ('world_size', 'threads')
    assert [a['environment'][k] for k in env] == [2, 1] and \
        [b['environment'][k] for k in env] == [1, 1]
    for k in ('records', 'variants', 'attack', 'convergence'):
        assert b[k] == a[k], k


@pytest.mark.slow
def test_resume_refuses_other_settings(tiny_voc, random_seg_checkpoint, tmp_path):
    wd = str(tmp_path / 'wd')
    base = ['tools/test.py', TINY, random_seg_checkpoint, '--work-dir', wd, '--attack', 'dag',
            '--cfg-options', *data_root_opts(tiny_voc), 'test_dataloader.dataset.indices=2',
            'custom_hooks.0.targets.use_gt=False']
    run_tool(base + ['--attack-options', 'max_iters=2'])
    state = osp.join(wd, 'attack_state')
    res = run_tool(base + ['--attack-options', 'max_iters=3', '--resume'], check=False)
    assert res.returncode != 0
    assert (f'error: cannot resume: {state} holds a run with another attack (max_iters: 2, now 3): '
            'rerun without --resume, or use another --work-dir') in res.stderr.splitlines()
    # a metric argument changed by --cfg-options: named, with the metric's default
    res = run_tool(base + ['--attack-options', 'max_iters=2', '--resume',
                           '--cfg-options', 'test_evaluator.metric.ignore_index=0'], check=False)
    assert res.returncode != 0
    assert (f'error: cannot resume: {state} holds a run with another test_evaluator '
            '(metric.ignore_index: 255, now 0): rerun without --resume, or use another '
            '--work-dir') in res.stderr.splitlines(), res.stderr[-2000:]
    # the same settings again: everything was done, nothing is attacked
    res = run_tool(base + ['--attack-options', 'max_iters=2', '--resume'])
    assert 'resuming: 2 of 2 images done by the earlier run, 0 to go' in res.stdout + res.stderr
    assert report(wd)['attack']['images'] == 2
