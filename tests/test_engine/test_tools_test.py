"""tools/test.py with the DAG hook and metric wrapper, run as a user runs it."""
import json
import os
import os.path as osp

import pytest

from conftest import TINY, data_root_opts, run_tool

# the briefly trained demo segmentor (random weights predict one class
# everywhere, and a report of ORIG = ADVR = PERM carries no attack information)
ATTACK = ['--attack', 'dag', '--attack-options', 'max_iters=4', 'gamma=2.0']


LEFTOVERS = [('', '.attack_report.json.k2j4_x.tmp'), ('figures', '.2008_000001.png.abc123.tmp'),
             ('perturbations', '.2008_000001.npz.q9z8w7.tmp')]
KEPT = [('', '.keep'), ('', 'notes.tmp')]


def report(work_dir):
    with open(osp.join(work_dir, 'attack_report.json')) as f:
        return json.load(f)


@pytest.fixture(scope='module')
def attacked(tiny_voc, trained_seg_checkpoint, tmp_path_factory):
    wd = str(tmp_path_factory.mktemp('attacked'))
    # what writers killed in an earlier run leave (hidden temporaries), and two
    # files of the user's that only look alike: the run removes the first only
    for sub, name in LEFTOVERS + KEPT:
        os.makedirs(osp.join(wd, sub), exist_ok=True)
        with open(osp.join(wd, sub, name), 'w') as f:
            f.write('partial')
    res = run_tool(['tools/test.py', TINY, trained_seg_checkpoint, *ATTACK, '--num-figures', '2',
                    '--work-dir', wd, '--cfg-options', *data_root_opts(tiny_voc)])
    return wd, res


def test_one_run_reports_orig_advr_perm_and_statistics(attacked):
    wd, res = attacked
    rep = report(wd)
    assert set(rep['variants']) == {'orig', 'advr', 'perm', 'advr_uint8'}
    for v in rep['variants'].values():
        assert {'mIoU', 'aAcc', 'mAcc'} <= set(v)
    att = rep['attack']
    assert att['images'] == 6 and att['no_targets'] == 0
    assert 0 < att['iters'] <= 4
    assert 0 < att['linf'] <= 8.0 + 1e-6 and att['p'] > 0
    assert 0 <= att['success'] <= 1
    # what the attack guarantees on a model that gets pixels right: targets
    # correct on the clean image were flipped (not a comparison of mIoUs)
    assert att['none_correct'] == 0 and att['target_success'] > 0
    assert rep['settings']['attack']['max_iters'] == 4
    assert rep['checkpoint'].endswith('iter_150.pth')
    assert 'ORIG' in res.stdout and 'ADVR' in res.stdout
    assert 'paper (FCN/FR on VOC)' in res.stdout   # DAG's table: with the paper's scale
    figs = os.listdir(osp.join(wd, 'figures'))
    assert len(figs) == 2 and all(f.endswith('.png') for f in figs)
    # the same pictures go to the config's vis_backends (here mmseg's LocalVisBackend)
    import glob
    sent = glob.glob(osp.join(wd, '*', 'vis_data', 'vis_image', 'attack_figure_*.png'))
    assert sorted(osp.basename(f)[len('attack_figure_'):-len('_0.png')] for f in sent) == \
        sorted(f[:-4] for f in figs)


def test_temporaries_of_a_killed_run_are_removed(attacked):
    wd, res = attacked
    for sub, name in LEFTOVERS:
        assert not osp.exists(osp.join(wd, sub, name)), name
    for sub, name in KEPT:
        assert osp.exists(osp.join(wd, sub, name)), name
    assert f'removed {len(LEFTOVERS)} temporary files left by a killed run' in \
        res.stdout + res.stderr


def test_one_record_per_image_and_the_convergence(attacked):
    from mmdag.engine.records import read_records
    wd, res = attacked
    records, skipped = read_records(osp.join(wd, 'attack_records.jsonl'))
    assert skipped == 0 and len(records) == 6
    assert len({r['image'] for r in records}) == 6
    rep = report(wd)
    for r in records:
        assert {'iters', 'p', 'linf', 'correct_frac', 'status', 'seconds', 'forwards',
                'backwards', 'trace', 'img_path'} <= set(r)
        assert r['trace'][0] == 1.0 and len(r['trace']) == r['iters'] + 1 == r['forwards']
        assert r['seconds'] > 0
    mean_iters = sum(r['iters'] for r in records) / 6
    assert rep['attack']['iters'] == pytest.approx(mean_iters)   # no image is left apart here
    conv = rep['convergence']
    assert conv['images'] == 6 and conv['iterations'] == max(r['iters'] for r in records)
    assert conv['median'][0] == 1.0 and conv['median'][-1] <= conv['median'][0]
    assert rep['records'] == dict(file='attack_records.jsonl', images=6, skipped_lines=0)


def test_orig_equals_a_clean_run_of_the_stock_metric(attacked, tiny_voc,
                                                     trained_seg_checkpoint, tmp_path):
    wd, _ = attacked
    clean = run_tool(['tools/test.py', TINY, trained_seg_checkpoint, '--attack', 'none',
                      '--work-dir', str(tmp_path), '--cfg-options', *data_root_opts(tiny_voc)])
    assert not osp.exists(osp.join(str(tmp_path), 'attack_report.json'))
    # the stock IoUMetric logs "mIoU: x" for the clean run
    line = [ln for ln in clean.stdout.splitlines() + clean.stderr.splitlines()
            if 'Iter(test)' in ln and 'mIoU:' in ln][-1]
    miou = float(line.split('mIoU:')[1].split()[0])
    assert report(wd)['variants']['orig']['mIoU'] == pytest.approx(miou, abs=0.01)


# 15 s on 2 cores (2026-12-07): with the slow checks, to keep the fast suite under 15 min
@pytest.mark.slow
def test_hook_added_to_a_stock_config_attacks_it(tiny_voc, trained_seg_checkpoint, tmp_path):
    cfg = tmp_path / 'my_dag_config.py'
    cfg.write_text(
        f"_base_ = ['{TINY}']\n"
        "custom_imports = dict(imports=['mmdag'], allow_failed_imports=False)\n"
        "custom_hooks = [dict(type='mmdag.AttackHook', attack=dict(max_iters=20, gamma=1.0))]\n"
        "test_evaluator = dict(_delete_=True, type='mmdag.AttackMetric',\n"
        "                      metric=dict(type='IoUMetric', iou_metrics=['mIoU']))\n")
    wd = str(tmp_path / 'wd')
    run_tool(['tools/test.py', str(cfg), trained_seg_checkpoint, '--work-dir', wd,
              '--cfg-options', *data_root_opts(tiny_voc)])
    rep = report(wd)
    v = rep['variants']
    assert rep['attack']['iters'] > 0 and rep['attack']['target_success'] > 0.05
    assert v['orig']['mIoU'] > 0 and v['advr']['mIoU'] < v['orig']['mIoU'] - 5


@pytest.mark.parametrize('case', ['checkpoint', 'random_bytes', 'text', 'truncated', 'config',
                                  'work_dir', 'model'])
def test_bad_input_gets_one_clear_line(case, tiny_voc, random_seg_checkpoint, tmp_path):
    args = [TINY, random_seg_checkpoint, '--attack', 'dag', '--work-dir', str(tmp_path / 'wd'),
            '--cfg-options', *data_root_opts(tiny_voc)]
    if case == 'checkpoint':
        args[1] = str(tmp_path / 'missing.pth')
        expect = 'checkpoint'
    elif case in ('random_bytes', 'text', 'truncated'):
        bad = tmp_path / 'bad.pth'
        if case == 'random_bytes':
            bad.write_bytes(bytes(range(7, 256)) * 40)
        elif case == 'text':
            bad.write_text('<html>404 Not Found</html>\n')
        else:
            with open(random_seg_checkpoint, 'rb') as f:
                data = f.read()
            bad.write_bytes(data[:len(data) // 2])
        args[1] = str(bad)
        expect = 'is not a PyTorch checkpoint'
    elif case == 'config':
        args[0] = str(tmp_path / 'missing_config.py')
        expect = 'config'
    elif case == 'work_dir':
        blocker = tmp_path / 'a_file'
        blocker.write_text('x')
        args[5] = str(blocker / 'wd')
        expect = 'not writable'
    else:
        bad = tmp_path / 'not_a_segmentor.py'
        bad.write_text(f"_base_ = ['{TINY}']\n"
                       "model = dict(_delete_=True, type='ResNetV1c', depth=18)\n")
        args[0] = str(bad)
        expect = 'Supported families'
    res = run_tool(['tools/test.py', *args], check=False)
    assert res.returncode == 2, res.stderr[-2000:]
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith('error: ') and expect in last, last
    print(f'BAD-INPUT {case}: {last}')  # docs/bad_inputs.md quotes these
    assert not osp.exists(osp.join(str(tmp_path / 'wd'), 'attack_report.json'))


def test_metric_without_hook_says_what_to_add(tiny_voc, random_seg_checkpoint, tmp_path):
    cfg = tmp_path / 'metric_only.py'
    cfg.write_text(
        f"_base_ = ['{TINY}']\n"
        "custom_imports = dict(imports=['mmdag'], allow_failed_imports=False)\n"
        "test_evaluator = dict(_delete_=True, type='mmdag.AttackMetric',\n"
        "                      metric=dict(type='IoUMetric'))\n")
    res = run_tool(['tools/test.py', str(cfg), random_seg_checkpoint, '--work-dir', str(tmp_path),
                    '--cfg-options', *data_root_opts(tiny_voc)], check=False)
    assert res.returncode != 0
    assert 'AttackHook' in res.stderr.strip().splitlines()[-1]


def _tools_test():
    import importlib.util
    import sys

    from conftest import ROOT
    if osp.join(ROOT, 'tools') not in sys.path:   # where the tool finds its _require
        sys.path.insert(0, osp.join(ROOT, 'tools'))
    spec = importlib.util.spec_from_file_location('tools_test', osp.join(ROOT, 'tools', 'test.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_hook_options_find_the_dag_hook_by_type_among_other_hooks():
    # the SSD config's custom_hooks: two zoo hooks, then the DAG hook; a
    # custom_hooks.0... override would change NumClassCheckHook
    from conftest import ROOT
    tool = _tools_test()
    args = tool.parse_args([osp.join(ROOT, 'configs', 'dag', 'ssd300_voc0712_dag.py'), 'x.pth',
                            '--attack-options', 'max_iters=7', '--targets-options',
                            'score_thr=0.01', 'gt_frame=input', '--hook-options', 'log_interval=3'])
    cfg = tool.build_cfg(args)
    types = [h['type'] for h in cfg.custom_hooks]
    # every hook the run is made of is in the config, once
    assert types == ['NumClassCheckHook', 'CheckInvalidLossHook', 'mmdag.AttackHook',
                     'mmdag.AttackFigureHook', 'mmdag.AttackReportHook', 'mmdag.AttackResumeHook',
                     'mmdag.CheckpointCheckHook'], types
    assert dict(cfg.custom_hooks[0]) == dict(type='NumClassCheckHook')
    dag = cfg.custom_hooks[2]
    assert dag['attack'] == dict(gamma=0.5, max_iters=7, adv_labels='random', seed=0)
    assert dag['targets'] == dict(score_thr=0.01, gt_frame='input')
    assert dag['log_interval'] == 3 and 'num_figures' not in dag
    assert cfg.custom_hooks[3]['num_figures'] == 4
