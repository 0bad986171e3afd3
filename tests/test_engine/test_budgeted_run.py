"""A budgeted attack through the stock tools/test.py, as a user runs it:
``--attack segpgd --attack-options epsilon=4``: the report names the attack
and its settings, every record stays inside the budget, the attack flipped
targets, the table goes without DAG's paper line, and a resumed run with
another epsilon is refused."""
import json
import os.path as osp

import pytest

from mmdag.engine.records import read_records
from conftest import TINY, data_root_opts, run_tool
from test_resume import attackable_seg_checkpoint

__all__ = ['attackable_seg_checkpoint']   # the fixture, imported for this module


def command(tiny_voc, checkpoint, wd, epsilon, *extra):
    return ['tools/test.py', TINY, checkpoint, '--work-dir', wd, *extra,
            '--attack', 'segpgd', '--attack-options', 'max_iters=4', f'epsilon={epsilon}',
            '--cfg-options', *data_root_opts(tiny_voc), 'test_dataloader.dataset.indices=3']


# 22 s on 2 cores (2026-12-07): with the slow checks, to keep the fast suite under 15 min
@pytest.mark.slow
def test_segpgd_through_tools_test(tiny_voc, attackable_seg_checkpoint, tmp_path):
    wd = str(tmp_path / 'wd')
    res = run_tool(command(tiny_voc, attackable_seg_checkpoint, wd, 4))
    with open(osp.join(wd, 'attack_report.json')) as f:
        report = json.load(f)
    settings = report['settings']['attack']
    assert settings['type'] == 'SegPGD' and settings['epsilon'] == 4.0
    assert settings['alpha'] == 2.55 and settings['random_start'] is True
    records = read_records(osp.join(wd, 'attack_records.jsonl'))[0]
    assert len(records) == 3
    for r in records:
        assert 0 < r['linf'] <= 4.0 + 1e-3 and r['iters'] == 4 and r['backwards'] == 4
    assert report['attack']['target_success'] > 0
    assert 'paper (FCN/FR on VOC)' not in res.stdout
    res = run_tool(command(tiny_voc, attackable_seg_checkpoint, wd, 2, '--resume'), check=False)
    assert res.returncode != 0 and 'epsilon: 4.0, now 2' in res.stderr, res.stderr[-2000:]


def test_worst_case_through_tools_test(tiny_voc, attackable_seg_checkpoint, tmp_path):
    """The worst case of PGD and CosPGD: per image, SEA's criterion; its
    headline aAcc and mIoU at or below each member's in the report, the
    printed table and the log, each from its own selection."""
    wd = str(tmp_path / 'wd')
    res = run_tool(['tools/test.py', TINY, attackable_seg_checkpoint, '--work-dir', wd,
                    '--attack', 'worstcase', '--attack-options', 'attacks=pgd,cospgd',
                    'epsilon=3', 'max_iters=3', '--cfg-options', *data_root_opts(tiny_voc),
                    'test_dataloader.dataset.indices=4'])
    with open(osp.join(wd, 'attack_report.json')) as f:
        report = json.load(f)
    settings = report['settings']['attack']
    assert settings['type'] == 'WorstCase' and settings['criterion'] == 'auto'
    assert [(a['type'], a['epsilon'], a['max_iters']) for a in settings['attacks']] == \
        [('PGD', 3.0, 3), ('CosPGD', 3.0, 3)]
    for r in read_records(osp.join(wd, 'attack_records.jsonl'))[0]:
        assert r['winner'] in ('PGD', 'CosPGD') and r['linf'] <= 3.0 + 1e-3
        # the image's winner: the lowest accuracy over all labelled pixels
        assert r['criterion'] == 'accuracy'
        acc = r['members_accuracy']
        assert r['accuracy'] == min(acc.values()) == acc[r['winner']]
        assert r['backwards'] == 6
    advr, members = report['variants']['advr'], report['members']
    assert set(members) == {'PGD', 'CosPGD'}
    for name in ('aAcc', 'mIoU'):
        for member, figures in members.items():
            assert advr[name] <= figures[name], (name, member)
    # which selection gave each figure; the attack's own winners kept apart
    headline = report['headline']
    assert headline['advr/aAcc']['selection'] in ('advr_acc', 'advr[PGD]', 'advr[CosPGD]')
    assert headline['advr/mIoU']['selection'] in ('advr_greedy', 'advr[PGD]', 'advr[CosPGD]')
    for key, source in headline.items():
        name = key.split('/', 1)[1]
        assert advr[name] == report['metrics'][f"{source['selection']}/{name}"]
        assert report['metrics'][f'advr_winner/{name}'] == report['variants']['advr_winner'][name]
    assert report['variants']['advr_acc']['images_PGD'] + \
        report['variants']['advr_acc']['images_CosPGD'] == 4
    # the printed table and the log show the worst case
    assert f"{advr['mIoU']:7.2f}" in res.stdout
    assert 'worst case: advr/aAcc from' in res.stdout + res.stderr


# 24 s on 2 cores (2026-12-07): with the slow checks, to keep the fast suite under 15 min
@pytest.mark.slow
def test_budgeted_perturbations_transfer(tiny_voc, attackable_seg_checkpoint, tmp_path):
    """SegPGD's saved perturbations (quantize=True: integers, stored exactly)
    replayed on the same model give its ADVR, inside the budget."""
    src, dst = str(tmp_path / 'src'), str(tmp_path / 'dst')
    opts = ['--cfg-options', *data_root_opts(tiny_voc), 'test_dataloader.dataset.indices=2']
    run_tool(['tools/test.py', TINY, attackable_seg_checkpoint, '--work-dir', src,
              '--attack', 'segpgd', '--attack-options', 'max_iters=3', 'epsilon=3',
              'quantize=True', '--save-perturbations', *opts])
    run_tool(['tools/test.py', TINY, attackable_seg_checkpoint, '--work-dir', dst,
              '--perturbations', osp.join(src, 'perturbations'), *opts])
    reports = []
    for wd in (src, dst):
        with open(osp.join(wd, 'attack_report.json')) as f:
            reports.append(json.load(f))
    a, b = reports
    assert b['attack']['iters'] == 0 and 0 < b['attack']['linf'] <= 3.0
    assert b['variants']['advr'] == a['variants']['advr'] != a['variants']['orig']
    assert b['attack']['target_success'] == a['attack']['target_success'] > 0
