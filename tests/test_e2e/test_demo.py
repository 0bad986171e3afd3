"""The demo chain (data -> stock training -> DAG through tools/test.py) at a small size."""
import json
import os
import os.path as osp

import pytest

from conftest import run_tool


@pytest.mark.slow
def test_demo_chain_small(tmp_path):
    args = ['tools/demo.py', '--tasks', 'seg', '--data-root', str(tmp_path / 'voc'), '--work-dir',
            str(tmp_path / 'wd'), '--num-train', '48', '--num-val', '4', '--train-iters', '200',
            '--attack-options', 'max_iters=30']
    first = run_tool(args)
    rep = json.load(open(tmp_path / 'wd' / 'seg' / 'attack_report.json'))
    v = rep['variants']
    # a briefly trained model is a real learner, and 30 DAG steps hurt it
    assert v['orig']['mIoU'] > 30
    assert v['advr']['mIoU'] < v['orig']['mIoU'] - 10
    assert abs(v['perm']['mIoU'] - v['orig']['mIoU']) < abs(v['advr']['mIoU'] - v['orig']['mIoU'])
    assert rep['attack']['images'] == 4 and rep['settings']['attack']['max_iters'] == 30
    assert 'ORIG' in first.stdout and 'report:' in first.stdout
    assert len(os.listdir(tmp_path / 'wd' / 'seg' / 'figures')) == 4
    # cached: the second run neither rewrites the data nor retrains
    second = run_tool(args)
    assert 'already' in second.stdout and 'training fcn_tiny' not in second.stdout
    assert osp.isfile(tmp_path / 'wd' / 'seg_train' / 'model.pth')


@pytest.mark.slow
def test_demo_chain_detection_small(tmp_path):
    run_tool(['tools/demo.py', '--tasks', 'det', '--data-root', str(tmp_path / 'voc'),
              '--work-dir', str(tmp_path / 'wd'), '--num-train', '48', '--num-val', '4',
              '--train-iters', '150', '--attack-options', 'max_iters=10'])
    rep = json.load(open(tmp_path / 'wd' / 'det' / 'attack_report.json'))
    v = rep['variants']
    assert set(v) == {'orig', 'advr', 'perm', 'advr_uint8'} and all('mAP' in x for x in v.values())
    assert rep['settings']['targets']['adapter'] == 'TwoStageTargets'
    assert rep['settings']['targets']['rpn_nms_iou'] == 0.9
    # no comparison of ADVR with ORIG here: after 10 steps on a detector trained
    # 150 iterations it is a coin toss (0.7254 > 0.7237 on one machine). What
    # DAG guarantees: images were attacked, each step has L-inf gamma, and
    # proposals correct on the clean image were flipped
    a = rep['attack']
    assert a['images'] == 4 and a['images'] - a['no_targets'] - a['none_correct'] >= 1
    assert 0 < a['iters'] <= 10 and 0 < a['linf'] <= 0.5 * a['iters'] + 1e-6
    assert a['target_success'] > 0
    records = [json.loads(ln) for ln in open(tmp_path / 'wd' / 'det' / 'attack_records.jsonl')]
    assert any(r['trace'] and r['trace'][-1] < r['trace'][0] == 1.0 for r in records)
    assert len(os.listdir(tmp_path / 'wd' / 'det' / 'figures')) == 4
