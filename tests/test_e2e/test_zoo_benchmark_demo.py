"""The zoo benchmark on its demo list, as the README runs it, at a small size:
Table 1, tables, pictures, transfer; a rerun does nothing; a killed model resumes."""
import json
import os
import os.path as osp

import pytest
import torch

from conftest import run_tool

LIST = 'configs/benchmark/demo.py'
NAMES = ['demo_fcn', 'demo_faster-rcnn', 'zoo_fcn_r50-d8_random']


# 345 s alone on 2 cores (589 s under load): by hand with make test-zoo, to
# keep CI's margin (it trains both demo models, as the docs check's demo
# and the demo chains do); its logic runs in-process in
# tests/test_benchmark/test_zoo_run.py and the wheel test runs `mmdag benchmark`
@pytest.mark.slow
@pytest.mark.zoo
def test_demo_list_end_to_end(tmp_path):
    run_tool(['tools/demo.py', '--train-only', '--tasks', 'seg', 'det', '--data-root',
              str(tmp_path / 'voc'), '--work-dir', str(tmp_path / 'demo'), '--num-train', '48',
              '--num-val', '4', '--train-iters', '100', '100'])
    env = dict(MMDAG_DEMO_DIR=str(tmp_path / 'demo'), MMDAG_DEMO_DATA=str(tmp_path / 'voc'))
    bench = tmp_path / 'bench'
    cmd = ['tools/zoo_benchmark.py', LIST, '--work-dir', str(bench), '--transfer',
           '--attack-options', 'max_iters=5', '--cfg-options', 'test_dataloader.dataset.indices=2',
           'test_dataloader.batch_size=1']
    first = run_tool(cmd, env=env)
    out = first.stdout + first.stderr
    # Table 1 on the console, one summary line per model
    for name in NAMES:
        assert f'{name}: attacking' in out and any(
            ln.startswith(name) for ln in first.stdout.splitlines()), name
    assert 'ORIG' in first.stdout and '3 models: 3 with results' in first.stdout
    rows = json.load(open(bench / 'benchmark.json'))['rows']
    assert [r['model'] for r in rows] == NAMES
    for r in rows:
        assert r['images'] == 2 and r['settings']['max_iters'] == 5
        # the device it ran on: the GPU's name where CUDA is present
        assert r['device'] == (torch.cuda.get_device_name(0) if torch.cuda.is_available()
                               else 'cpu')
        # what the attack guarantees, not a comparison of weakly trained models'
        # figures (ADVR may exceed ORIG by chance after 5 steps): it ran on
        # every model, at most 5 updates per image, each of L-inf gamma = 0.5
        assert None not in (r['ORIG'], r['ADVR'], r['PERM'])
        assert 0 < r['iters_mean'] <= 5 and 0 < r['linf'] <= 0.5 * r['iters_mean'] + 1e-6
        assert r['mmdag'] and r['torch'] and r['date']
    assert [r['metric'] for r in rows] == ['mIoU', 'mAP', 'mIoU']
    # the row is the model's own report
    rep = json.load(open(bench / 'demo_fcn' / 'attack_report.json'))
    assert rows[0]['ADVR'] == round(rep['variants']['advr']['mIoU'], 2)
    assert len(open(bench / 'benchmark.csv').read().splitlines()) == 4
    # Table 1, and the list's budgeted attacks (PGD, SegPGD, the worst case
    # per image) on the two segmentors and (DetPGD, TOG vanishing) on the
    # detector, in one run each under <model>/attacks
    assert open(bench / 'benchmark.md').read().count('\n| ') == 3 + 1 + 3   # + a header
    a = rows[1]['attacks']
    brep = json.load(open(bench / 'demo_faster-rcnn' / 'attacks' / 'attack_report.json'))
    assert set(a['members']) == {'DetPGD', 'TOGVanishing'} and a['epsilon'] == 4.0
    assert a['worst'] == round(100 * brep['metrics']['advr/mAP'], 2)
    assert a['worst'] <= min(a['members'].values())
    errors = brep['errors']
    assert a['found'] == f"{errors['variants']['advr_worst']['tp']}/{errors['gt']}"
    assert all(v['adds_up'] for v in errors['variants'].values())
    for r, name in ((rows[0], 'demo_fcn'), (rows[2], 'zoo_fcn_r50-d8_random')):
        a = r['attacks']
        brep = json.load(open(bench / name / 'attacks' / 'attack_report.json'))
        assert set(a['members']) == {'PGD', 'SegPGD'} and a['epsilon'] == 4.0
        assert a['worst'] == round(brep['variants']['advr']['mIoU'], 2)
        assert a['worst'] <= min(a['members'].values())
        assert a['members']['PGD'] == round(brep['members']['PGD']['mIoU'], 2)
        assert sum(a['wins'].values()) <= a['images'] == 2
    assert 'worst case' in first.stdout
    pics = set(os.listdir(bench / 'pictures'))
    assert 'variants.png' in pics
    for name in NAMES:
        assert f'{name}_figure1.png' in pics and f'{name}_iterations.png' in pics
    # transfer: the two segmentors' perturbations on each other (one detector: no pair)
    cells = json.load(open(bench / 'transfer.json'))['cells']
    pairs = {(c['made_on'], c['applied_to']) for c in cells}
    assert ('demo_fcn', 'zoo_fcn_r50-d8_random') in pairs
    assert ('zoo_fcn_r50-d8_random', 'demo_fcn') in pairs
    assert ('demo_fcn', 'demo_fcn') in pairs
    assert not any('faster' in a and 'faster' not in b for a, b in pairs)

    # a rerun of the finished list runs nothing, says so, and changes no table
    stamps = {f: os.stat(bench / f).st_mtime_ns for f in
              ('benchmark.md', 'benchmark.csv', 'benchmark.json', 'transfer.json',
               *(osp.join('pictures', p) for p in pics))}
    again = run_tool(cmd, env=env)
    out = again.stdout + again.stderr
    assert out.count('finished earlier with these settings, skipped') == 3 + 3 + 2
    assert 'attacking' not in out and 'nothing to run' in again.stdout
    assert {f: os.stat(bench / f).st_mtime_ns for f in stamps} == stamps

    # a model whose run was killed (its entry still 'running', its state saved)
    # is resumed, not restarted, and ends with the same row
    entry_path = bench / 'demo_fcn' / 'zoo_entry.json'
    entry = json.load(open(entry_path))
    json.dump(dict(entry, status='running'), open(entry_path, 'w'))
    os.remove(bench / 'demo_fcn' / 'attack_report.json')
    # ... killed before its last image was saved
    state = sorted((bench / 'demo_fcn' / 'attack_state').glob('*-batch*.npz'),
                   key=lambda p: int(p.stem.rsplit('batch', 1)[1]))
    assert len(state) == 2
    state[-1].unlink()
    figures = os.listdir(bench / 'demo_fcn' / 'figures')
    # ... and so was its worst-case run
    attacks = bench / 'demo_fcn' / 'attacks'
    entry = json.load(open(attacks / 'zoo_entry.json'))
    json.dump(dict(entry, status='running'), open(attacks / 'zoo_entry.json', 'w'))
    os.remove(attacks / 'attack_report.json')
    state = sorted((attacks / 'attack_state').glob('*-batch*.npz'),
                   key=lambda p: int(p.stem.rsplit('batch', 1)[1]))
    state[-1].unlink()
    resumed = run_tool(cmd + ['--models', 'demo_fcn'], env=env)
    assert 'demo_fcn: resuming the killed run' in resumed.stdout + resumed.stderr
    assert 'demo_fcn.attacks: resuming the killed run' in resumed.stdout + resumed.stderr
    assert '1 of 2 images done by the earlier run' in open(attacks / 'benchmark.log').read()
    log = open(bench / 'demo_fcn' / 'benchmark.log').read()
    assert '--resume' in log and '1 of 2 images done by the earlier run, 1 to go' in log
    # the killed run's picture counts towards --num-figures 1
    assert os.listdir(bench / 'demo_fcn' / 'figures') == figures == [figures[0]]
    new_rows = json.load(open(bench / 'benchmark.json'))['rows']
    assert [r['model'] for r in new_rows] == NAMES   # --models: the tables keep the list
    row = new_rows[0]
    assert {k: row[k] for k in ('ORIG', 'ADVR', 'PERM', 'iters_mean', 'p')} == \
        {k: rows[0][k] for k in ('ORIG', 'ADVR', 'PERM', 'iters_mean', 'p')}
    # the resumed worst-case run ends with the same figures (its timing aside)
    assert {k: v for k, v in row['attacks'].items() if k != 'sec_per_image'} == \
        {k: v for k, v in rows[0]['attacks'].items() if k != 'sec_per_image'}


def test_bad_list_is_one_line(tmp_path):
    res = run_tool(['tools/zoo_benchmark.py', str(tmp_path / 'nope.py')], check=False)
    assert res.returncode != 0 and 'error: model list' in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    res = run_tool(['tools/zoo_benchmark.py', 'configs/benchmark/demo.py', '--models', 'x'],
                   check=False)
    assert res.returncode != 0 and "['x'] not in configs/benchmark/demo.py" in res.stderr


# 15 s on 2 cores (2026-12-07): with the slow checks, to keep the fast suite under 15 min
@pytest.mark.slow
def test_a_failing_model_does_not_stop_the_list(tmp_path):
    lst = tmp_path / 'list.py'
    lst.write_text(
        "models = [dict(name='broken', config='configs/demo/fcn_tiny_synthetic-voc.py',\n"
        "               checkpoint='random', cfg_options={'model.backbone.type': 'NoSuchNet'}),\n"
        "          dict(name='missing', config='configs/demo/fcn_tiny_synthetic-voc_dag.py',\n"
        f"               checkpoint='{tmp_path}/none.pth')]\n")
    # temporaries of a benchmark killed inside a write: cleared at the start
    leftovers = [tmp_path / 'b' / '.benchmark.md.x1y2z3.tmp',
                 tmp_path / 'b' / 'pictures' / '.variants.png.a1b2c3.tmp',
                 tmp_path / 'b' / 'broken' / '.zoo_entry.json.q1w2e3.tmp']
    for f in leftovers:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text('partial')
    res = run_tool(['tools/zoo_benchmark.py', str(lst), '--work-dir', str(tmp_path / 'b')],
                   check=False)
    out = res.stdout + res.stderr
    assert res.returncode == 1 and 'Traceback' not in out
    assert '[zoo] removed 3 temporary files left by a killed benchmark' in res.stdout
    assert not any(f.exists() for f in leftovers)
    assert 'broken: FAILED: cannot build configs/demo/fcn_tiny_synthetic-voc.py with random ' \
        'weights: KeyError' in out
    assert 'missing: FAILED (exit 2): error: checkpoint' in out
    assert '2 models: 0 with results, 2 failed (broken, missing)' in res.stdout
    rows = json.load(open(tmp_path / 'b' / 'benchmark.json'))['rows']
    assert [r['failed'][:6] for r in rows] == ['cannot', 'error:']
