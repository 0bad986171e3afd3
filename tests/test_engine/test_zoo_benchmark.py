"""The zoo benchmark's pieces: model lists, skip / resume / start, rows, tables, pictures."""
import json
import os
import os.path as osp
import sys

import pytest

from conftest import ROOT

sys.path.insert(0, osp.join(ROOT, 'tools'))

from mmdag.benchmark.zoo_entry import ENTRY_FILE, write_entry  # noqa: E402
from mmdag.benchmark.zoo_list import fingerprint, load_model_list, plan  # noqa: E402
from mmdag.benchmark.zoo_progress import RunProgress  # noqa: E402
from mmdag.benchmark.zoo_run import launch, options  # noqa: E402
from mmdag.benchmark.zoo_tables import (csv_text, format_rows, markdown, model_row,  # noqa: E402
                                        write_if_changed, write_tables)
from mmdag.errors import MMDagError  # noqa: E402


def write(path, text):
    os.makedirs(osp.dirname(str(path)), exist_ok=True)
    with open(path, 'w') as f:
        f.write(text)
    return str(path)


def test_the_shipped_lists_load():
    zoo = load_model_list(osp.join(ROOT, 'configs/benchmark/voc_zoo.py'))
    assert len(zoo) == 6 and all(e['checkpoint'].startswith('https://') for e in zoo)
    assert all(osp.isfile(osp.join(ROOT, e['config'])) for e in zoo)
    # every configs/dag/ model is in the default list
    shipped = set(os.listdir(osp.join(ROOT, 'configs/dag')))
    assert {osp.basename(e['config']) for e in zoo} == shipped
    demo = load_model_list(osp.join(ROOT, 'configs/benchmark/demo.py'))
    assert [e['name'] for e in demo] == ['demo_fcn', 'demo_faster-rcnn', 'zoo_fcn_r50-d8_random']
    assert demo[0]['checkpoint'] == 'work_dirs/demo/seg_train/model.pth'
    assert demo[2]['checkpoint'] == 'random'


def test_demo_list_follows_the_environment(monkeypatch):
    monkeypatch.setenv('MMDAG_DEMO_DIR', '/tmp/elsewhere')
    monkeypatch.setenv('MMDAG_DEMO_DATA', '/tmp/voc')
    demo = load_model_list(osp.join(ROOT, 'configs/benchmark/demo.py'))
    assert demo[0]['checkpoint'] == '/tmp/elsewhere/seg_train/model.pth'
    opts = demo[0]['cfg_options']
    assert opts['test_dataloader.dataset.data_root'] == '/tmp/voc/VOCdevkit/VOC2012'


def test_list_defaults_and_refusals(tmp_path):
    good = write(tmp_path / 'l.py', "defaults = dict(attack_options=dict(max_iters=5), "
                 "cfg_options={'a': 1})\n"
                 "models = [dict(config='x/fcn.py', checkpoint='c.pth', cfg_options={'b': 2}),\n"
                 "          dict(name='two', config='y.py', checkpoint='random', "
                 "attack_options=dict(gamma=1.0))]\n")
    a, b = load_model_list(good)
    assert a['name'] == 'fcn' and a['cfg_options'] == {'a': 1, 'b': 2}
    assert a['attack_options'] == {'max_iters': 5}
    assert b['attack_options'] == {'max_iters': 5, 'gamma': 1.0} and b['seed'] == 0
    cases = {
        "models = [dict(config='a.py')]": 'both config and checkpoint',
        "models = [dict(config='a.py', checkpoint='c', weights='w')]": "unknown key(s) ['weights']",
        "models = [dict(config='a.py', checkpoint='c'), dict(config='b/a.py', checkpoint='d')]":
            "'a' is used twice",
        "models = [dict(name='a b', config='a.py', checkpoint='c')]": 'must be letters',
        "x = 1": 'has no `models',
        "models = [": 'cannot read model list',
    }
    for text, msg in cases.items():
        with pytest.raises(MMDagError, match=None) as e:
            load_model_list(write(tmp_path / 'bad.py', text))
        assert msg in str(e.value), (text, str(e.value))
        assert '\n' not in str(e.value)
    with pytest.raises(MMDagError, match='not found'):
        load_model_list(str(tmp_path / 'none.py'))


def test_plan_skip_resume_start(tmp_path):
    wd = str(tmp_path / 'm')
    cfg = write(tmp_path / 'c.py', 'x = 1\n')
    e = dict(config=cfg, checkpoint='c.pth', seed=0, cfg_options={}, attack_options={})
    fp = fingerprint(e, dict(num_figures=1))
    assert plan(wd, fp) == 'start'
    write_entry(wd, dict(fingerprint=fp, status='running'))
    assert plan(wd, fp) == 'start'            # no saved state: nothing to resume
    write(osp.join(wd, 'attack_state', 'run.json'), json.dumps(dict(images=['a', 'b', 'c'])))
    assert plan(wd, fp) == 'resume'
    write_entry(wd, dict(fingerprint=fp, status='finished'))
    assert plan(wd, fp) == 'resume'           # finished, but its report is gone
    write(osp.join(wd, 'attack_report.json'), '{}')
    assert plan(wd, fp) == 'skip'
    # other settings, or an edited config file: attacked again
    assert plan(wd, fingerprint(e, dict(num_figures=2))) == 'start'
    write(cfg, 'x = 2\n')
    assert plan(wd, fingerprint(e, dict(num_figures=1))) == 'start'
    # progress: records against the run's images; a cut last line is not an image
    write(osp.join(wd, 'attack_records.jsonl'), '{"image": "a"}\n{"image": "b"}\n{"ima')
    assert RunProgress(wd).poll() == (2, 3)
    assert osp.isfile(osp.join(wd, ENTRY_FILE))


def fake_run(wd, metric='mIoU', scale=1.0):
    """A finished run's report and records, as the hook writes them."""
    report = dict(
        metrics={f'orig/{metric}': 80.0 / scale, f'advr/{metric}': 5.0 / scale,
                 f'perm/{metric}': 79.0 / scale, 'attack/iters': 12.5, 'attack/p': 1e-3,
                 'attack/linf': 3.2, 'attack/success': 0.9},
        attack=dict(iters=12.5, p=1e-3, linf=3.2, success=0.9, images=3),
        settings=dict(attack=dict(max_iters=20, gamma=0.5, adv_labels='random')),
        environment=dict(device='cpu', world_size=1, torch='2.x', mmdag='0.x', mmseg='1.2.2'),
        config='configs/x.py',
        convergence=dict(images=2, iterations=3, median=[1, .5, .2, 0], q25=[1, .4, .1, 0],
                         q75=[1, .6, .3, .1], mean=[1, .5, .2, .05], running=[1, 1, .5, 0]))
    write(osp.join(wd, 'attack_report.json'), json.dumps(report))
    recs = [dict(image='a', iters=10, status='converged', seconds=0.5),
            dict(image='b', iters=15, status='max_iters', seconds=0.7),
            dict(image='c', iters=0, status='none_correct', seconds=0.1),
            dict(image='a', iters=10, status='converged', seconds=0.5)]   # a padded copy
    write(osp.join(wd, 'attack_records.jsonl'), ''.join(json.dumps(r) + '\n' for r in recs))
    write_entry(wd, dict(status='finished', finished_at='2026-11-27 10:00:00',
                         fingerprint=dict(checkpoint='c.pth')))


def test_rows_tables_and_pictures(tmp_path):
    fake_run(str(tmp_path / 'seg'))
    fake_run(str(tmp_path / 'det'), metric='pascal_voc/mAP', scale=100.0)
    seg = model_row('seg', str(tmp_path / 'seg'))
    det = model_row('det', str(tmp_path / 'det'))
    assert (seg['ORIG'], seg['ADVR'], seg['PERM']) == (80.0, 5.0, 79.0)
    assert (det['metric'], det['ORIG'], det['ADVR']) == ('mAP', 80.0, 5.0)   # mAP in %
    # the median over the attacked images only, each image once
    assert seg['iters_median'] == 12.5 and seg['iters_mean'] == 12.5
    assert seg['sec_per_image'] == round((0.5 + 0.7 + 0.1) / 3, 3)
    assert seg['date'] == '2026-11-27 10:00:00' and seg['checkpoint'] == 'c.pth'
    assert seg['settings'] == dict(max_iters=20, gamma=0.5, adv_labels='random')
    assert model_row('none', str(tmp_path / 'none')) is None
    rows = [seg, det, dict(model='broken', failed='error: checkpoint x not found')]
    text = format_rows(rows)
    assert 'seg' in text and '80.00' in text and 'failed: error: checkpoint' in text
    md = markdown(rows)
    assert md.count('\n| ') == 3 and 'finished 2026-11-27 10:00:00' in md
    lines = csv_text(rows).splitlines()
    assert lines[0].startswith('model,metric,ORIG,ADVR,PERM') and len(lines) == 4
    out = str(tmp_path / 'bench')
    paths = write_tables(out, rows, dict(list='l.py'))
    assert json.load(open(paths['benchmark.json']))['rows'][0]['model'] == 'seg'
    # unchanged content is not rewritten
    stamp = os.stat(paths['benchmark.md']).st_mtime_ns
    assert write_if_changed(paths['benchmark.md'], md) is False
    assert os.stat(paths['benchmark.md']).st_mtime_ns == stamp

    from mmdag.benchmark.plots import convergence_plot, iterations_histogram, variants_chart
    rep = json.load(open(tmp_path / 'seg' / 'attack_report.json'))
    for p in (convergence_plot(rep['convergence'], str(tmp_path / 'p' / 'c.png'), 'seg'),
              iterations_histogram([10, 15], str(tmp_path / 'p' / 'h.png'), 20, 'seg'),
              variants_chart(rows, str(tmp_path / 'p' / 'v.png'))):
        with open(p, 'rb') as f:
            assert f.read(8) == b'\x89PNG\r\n\x1a\n'
    assert sorted(os.listdir(tmp_path / 'p')) == ['c.png', 'h.png', 'v.png']   # no temp files


def test_cli_values_read_back():
    import argparse

    from mmengine.config import DictAction

    p = argparse.ArgumentParser()
    p.add_argument('--o', nargs='+', action=DictAction)
    opts = {'a.b': (160, 120), 'c': [1, 2], 'd': True, 'e': 0.5, 'f': 'x/y', 'g': None}
    back = p.parse_args(options('--o', opts)).o
    assert back == opts


def test_launchers_command_lines():
    import zoo_benchmark
    args = zoo_benchmark.parse_args(['configs/benchmark/demo.py', '--launcher', 'pytorch',
                                     '--gpus', '4', '--port', '29600'])
    cmd = launch(args, 'm', ['CFG', 'CKPT', '--work-dir', 'W'], zoo_benchmark.TEST_TOOL)
    assert cmd[1:5] == ['-m', 'torch.distributed.run', '--nproc_per_node=4',
                        '--master_port=29600']
    # the test tool by its absolute path: the benchmark runs from any directory
    test_py = osp.join(ROOT, 'tools', 'test.py')
    assert zoo_benchmark.TEST_TOOL == test_py
    assert cmd[5:] == [test_py, 'CFG', 'CKPT', '--work-dir', 'W', '--launcher', 'pytorch']
    args = zoo_benchmark.parse_args(['l.py', '--launcher', 'slurm', '--gpus', '16',
                                     '--partition', 'p1', '--srun-args=--quotatype=auto'])
    cmd = launch(args, 'm', ['CFG', 'CKPT'], zoo_benchmark.TEST_TOOL)
    # what tools/slurm_test.sh runs: 8 GPUs per node, one task per GPU
    assert cmd[:3] == ['srun', '-p', 'p1'] and '--gres=gpu:8' in cmd
    assert '--ntasks=16' in cmd and '--ntasks-per-node=8' in cmd and '--quotatype=auto' in cmd
    assert cmd[-5:] == [test_py, 'CFG', 'CKPT', '--launcher', 'slurm']
    args = zoo_benchmark.parse_args(['l.py'])
    assert launch(args, 'm', ['CFG'], zoo_benchmark.TEST_TOOL)[1:] == [test_py, 'CFG']
