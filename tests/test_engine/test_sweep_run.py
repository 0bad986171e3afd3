"""An epsilon sweep through the stock tools/test.py, as a user runs it:
``--attack worstcase --epsilons 1 4``. The report holds the curve (rows, a
table, a picture); each epsilon's figures are those of a run at that
epsilon alone; every record has each epsilon inside its budget and the
worst case at or below its members; a resumed sweep ends with the same
report and a sweep with other epsilons is refused; the 8-bit figure equals
ADVR when the attack already rounds."""
import json
import os
import os.path as osp

import pytest

from mmdag.engine.records import read_records
from conftest import TINY, data_root_opts, run_tool
from test_resume import attackable_seg_checkpoint

__all__ = ['attackable_seg_checkpoint']   # the fixture, imported for this module


def command(tiny_voc, checkpoint, wd, *extra, attack=('attacks=pgd,segpgd', 'max_iters=2')):
    return ['tools/test.py', TINY, checkpoint, '--work-dir', wd, *extra,
            '--attack', 'worstcase', '--attack-options', *attack,
            '--cfg-options', *data_root_opts(tiny_voc), 'test_dataloader.dataset.indices=2']


def report(wd):
    with open(osp.join(wd, 'attack_report.json')) as f:
        return json.load(f)


def stable(rep):
    """A report without what differs between two runs of the same settings."""
    return {k: v for k, v in rep['metrics'].items() if k not in ('time', 'data_time')}


@pytest.fixture(scope='module')
def sweep_run(tiny_voc, attackable_seg_checkpoint, tmp_path_factory):
    wd = str(tmp_path_factory.mktemp('sweep') / 'wd')
    res = run_tool(command(tiny_voc, attackable_seg_checkpoint, wd, '--epsilons', '4', '1',
                           '--save-perturbations'))
    return wd, res


def test_the_report_holds_the_curve(sweep_run):
    wd, res = sweep_run
    rep = report(wd)
    sweep = rep['sweep']
    assert sweep['epsilons'] == [1.0, 4.0] and sweep['metric'] == 'mIoU'
    assert [r['epsilon'] for r in sweep['rows']] == [1.0, 4.0]
    m = rep['metrics']
    # the unmarked keys are the largest epsilon's; each other has its own
    top, low = sweep['rows'][1], sweep['rows'][0]
    assert top['variants']['advr'] == round(m['advr/mIoU'], 4)
    assert low['variants']['advr'] == round(m['advr@1/mIoU'], 4)
    for row in sweep['rows']:
        assert set(row['variants']) == {'advr', 'perm', 'advr_uint8', 'advr_greedy',
                                        'advr_acc', 'advr_winner'}
        assert 0 < row['attack']['linf'] <= row['epsilon'] + 1e-3
    assert m['attack@1/linf'] == low['attack']['linf'] and m['attack/linf'] == top['attack']['linf']
    assert sweep['orig'] == round(m['orig/mIoU'], 4)
    assert '| 1 |' in sweep['table'] and '| 4 |' in sweep['table']
    assert sweep['picture'] == 'attack_curve.png'
    assert osp.getsize(osp.join(wd, 'attack_curve.png')) > 0
    assert rep['settings']['attack']['epsilons'] == [1.0, 4.0]
    # each member's own images predicted too, at every epsilon
    assert set(rep['members']) == {'PGD', 'SegPGD'}
    assert m['advr[PGD]/mIoU'] == rep['members']['PGD']['mIoU']
    for row in sweep['rows']:
        assert set(row['members']) == {'PGD', 'SegPGD'}
        # ADVR, the worst case: at or below each member and the attack's
        # own per-image winners; its mIoU is the greedy selection's
        v = row['variants']
        assert v['advr'] <= min(v['advr_winner'], *row['members'].values())
        assert v['advr'] == v['advr_greedy'] or v['advr'] in row['members'].values()
        acc = row['metrics']['advr_acc']['aAcc']
        assert row['metrics']['advr']['aAcc'] <= acc
        assert all(row['metrics']['advr']['aAcc'] <= m
                   for m in (row['metrics']['advr_winner']['aAcc'], acc))
        picked = row['metrics']['advr_greedy']
        assert picked['images_PGD'] + picked['images_SegPGD'] == 2
    assert '| PGD | SegPGD |' in sweep['table']
    assert 'epsilon sweep' in res.stdout + res.stderr


def test_each_record_holds_every_epsilon_inside_its_budget(sweep_run):
    wd, _ = sweep_run
    records = read_records(osp.join(wd, 'attack_records.jsonl'))[0]
    assert len(records) == 2
    for r in records:
        assert set(r['sweep']) == {'1', '4'}
        # the top-level statistics are the largest epsilon's
        assert r['sweep']['4']['correct_frac'] == r['correct_frac']
        for label, s in r['sweep'].items():
            assert s['linf'] <= float(label) + 1e-3
            acc = s['members_accuracy']
            assert s['accuracy'] == min(acc.values()) == acc[s['winner']]
    for d in ('perturbations', 'perturbations@1'):
        assert sorted(os.listdir(osp.join(wd, d))) == sorted(r['image'] + '.npz' for r in records)


def test_each_epsilon_equals_a_run_at_that_epsilon_alone(sweep_run, tiny_voc,
                                                         attackable_seg_checkpoint, tmp_path):
    wd, _ = sweep_run
    swept = report(wd)['metrics']
    one = str(tmp_path / 'one')
    # a sweep of one epsilon: the step scaled to that budget as in the sweep
    run_tool(command(tiny_voc, attackable_seg_checkpoint, one, '--epsilons', '1',
                     attack=('attacks=pgd,segpgd', 'max_iters=2')))
    alone = report(one)['metrics']
    for k in ('advr/mIoU', 'advr_uint8/mIoU', 'perm/mIoU', 'attack/linf', 'attack/target_success'):
        head, _, name = k.partition('/')
        assert swept[f'{head}@1/{name}'] == alone[k], k
    assert swept['orig/mIoU'] == alone['orig/mIoU']


# 21 s on 2 cores (2026-12-07): with the slow checks, to keep the fast suite under 15 min
@pytest.mark.slow
def test_a_resumed_sweep_ends_with_the_same_report(sweep_run, tiny_voc,
                                                   attackable_seg_checkpoint):
    wd, _ = sweep_run
    before = report(wd)
    res = run_tool(command(tiny_voc, attackable_seg_checkpoint, wd, '--epsilons', '1', '4',
                           '--resume'))
    assert 'resuming: 2 of 2 images done' in res.stdout + res.stderr
    after = report(wd)
    assert stable(after) == stable(before)
    assert after['sweep']['rows'] == before['sweep']['rows']
    res = run_tool(command(tiny_voc, attackable_seg_checkpoint, wd, '--epsilons', '1', '2',
                           '--resume'), check=False)
    assert res.returncode != 0 and 'epsilon' in res.stderr, res.stderr[-2000:]


def test_the_8bit_figure_is_advr_when_the_attack_rounds(tiny_voc, attackable_seg_checkpoint,
                                                        tmp_path):
    wd = str(tmp_path / 'q')
    run_tool(['tools/test.py', TINY, attackable_seg_checkpoint, '--work-dir', wd,
              '--attack', 'pgd', '--attack-options', 'max_iters=2', 'epsilon=2.5',
              'quantize=True', '--cfg-options', *data_root_opts(tiny_voc),
              'test_dataloader.dataset.indices=1'])
    v = report(wd)['variants']
    assert v['advr_uint8'] == v['advr']


def test_a_metric_asking_for_what_the_hook_does_not_make_is_refused():
    from mmengine.registry import init_default_scope

    from mmdag.errors import MMDagError
    from mmdag.evaluation import AttackMetric
    init_default_scope('mmseg')
    metric = AttackMetric(metric=dict(type='IoUMetric'), variants=['orig', 'advr@2'])
    with pytest.raises(MMDagError, match=r"asks for \['advr@2'\]"):
        metric.configure(['advr', 'orig'], [])
    # unset: every variant the hook makes, and each other epsilon's statistics
    metric = AttackMetric(metric=dict(type='IoUMetric'))
    metric.configure(['advr', 'orig', 'advr@2'], [2.0])
    # (and the detection error breakdowns: one None per image for a segmentor)
    assert sorted(metric.result_lists()) == ['_stats', '_stats@2', 'advr', 'advr@2', 'errors',
                                             'orig', 'tide']
    # an ensemble's members: their greedy worst case, inside a metric's own prefix
    metric = AttackMetric(metric=dict(type='IoUMetric', prefix='dice'))
    metric.configure(['advr', 'advr[PGD]', 'advr[SegPGD]'], [])
    assert 'advr_greedy' in metric.result_lists()
    assert metric.greedy_parts[None].prefix == 'advr_greedy/dice'
    assert metric.worst_parts[None][1].prefix == 'advr_worst/dice'


def test_another_attack_replaces_the_configs_attack_settings():
    from mmengine.config import Config

    from mmdag.apis import add_attack_to_config
    cfg = Config.fromfile(TINY.replace('.py', '_dag.py'))
    add_attack_to_config(cfg, dict(type='PGD', epsilon=2))
    hook = next(h for h in cfg.custom_hooks if h['type'].endswith('AttackHook'))
    assert hook['attack'] == dict(type='PGD', epsilon=2)   # DAG's gamma is not PGD's
    cfg = Config.fromfile(TINY.replace('.py', '_dag.py'))
    add_attack_to_config(cfg, dict(max_iters=7))
    hook = next(h for h in cfg.custom_hooks if h['type'].endswith('AttackHook'))
    assert hook['attack']['max_iters'] == 7 and hook['attack']['gamma'] == 0.5


def test_with_one_image_the_worst_case_is_its_winners_figure(tiny_voc, attackable_seg_checkpoint,
                                                             tmp_path):
    wd = str(tmp_path / 'w')
    run_tool(['tools/test.py', TINY, attackable_seg_checkpoint, '--work-dir', wd,
              '--attack', 'worstcase', '--attack-options', 'attacks=pgd,cospgd,segpgd',
              'max_iters=2', 'epsilon=6', '--cfg-options', *data_root_opts(tiny_voc),
              'test_dataloader.dataset.indices=1'])
    rep = report(wd)
    [record] = read_records(osp.join(wd, 'attack_records.jsonl'))[0]
    # the member predictions are of each member's own images: the winner's is
    # what the loop predicted; with one image the headline is the lowest member's
    assert rep['members'][record['winner']] == rep['variants']['advr_winner']
    assert set(rep['members']) == {'PGD', 'CosPGD', 'SegPGD'}
    for name in ('aAcc', 'mIoU'):
        assert rep['variants']['advr'][name] == min(m[name] for m in rep['members'].values())
