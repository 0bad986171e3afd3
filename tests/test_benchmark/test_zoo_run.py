"""The zoo benchmark's run in this process (mmdag.benchmark.zoo_run), each
model's ``tools/test.py`` run replaced by one that writes a finished run's
files: the list, the budgeted attacks' worst-case runs, the transfer runs,
the tables and pictures, skipping on a rerun, failures and refusals."""
import argparse
import json
import os
import os.path as osp

import pytest

from mmdag.benchmark import zoo_run
from mmdag.benchmark.zoo_followups import budget_entries, budget_settings, transfer_entries
from mmdag.benchmark.zoo_run import failure_reason, launch, run_benchmark, summary_line
from mmdag.errors import MMDagError

LIST = """models = [dict(name='seg_a', config='{d}/seg_a.py', checkpoint='a.pth'),
          dict(name='seg_b', config='{d}/seg_b.py', checkpoint='b.pth'),
          dict(name='det_c', config='{d}/det_c.py', checkpoint='c.pth')]
attacks = ['pgd', 'segpgd']
det_attacks = ['detpgd']
budget_options = dict(epsilon=4)
"""


def _args(lst, work_dir, **kw):
    """The tool's arguments, its defaults."""
    args = argparse.Namespace(
        list=lst, work_dir=work_dir, models=None, attack_options={}, cfg_options={},
        attacks=None, det_attacks=None, budget_options={}, num_figures=1, transfer=False,
        launcher='none', gpus=1, port=29533, partition=None, srun_args='', verbose=False)
    vars(args).update(kw)
    return args


def _write(path, data):
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        f.write(data if isinstance(data, str) else json.dumps(data))


class FakeTestTool:
    """Stands for ``tools/test.py``: writes what a finished run writes (its
    report, records and, for DAG, a picture), or fails with ``fail``'s
    one-line error for the models named there."""

    def __init__(self, fail=()):
        self.calls, self.fail = [], set(fail)

    def __call__(self, args, cmd, work_dir, prog, root):
        test_args = cmd[cmd.index('--work-dir') - 2:]
        self.calls.append(test_args)
        config, attack = test_args[0], test_args[test_args.index('--attack') + 1]
        if osp.basename(config)[:-3] in self.fail and attack == 'dag':
            _write(osp.join(work_dir, 'benchmark.log'), 'loading\nerror: checkpoint x not found\n')
            return 2
        seg = osp.basename(config).startswith('seg')
        metric, scale = ('mIoU', 1.0) if seg else ('pascal_voc/mAP', 100.0)
        metrics = {f'orig/{metric}': 80.0 / scale, f'advr/{metric}': 5.0 / scale,
                   f'perm/{metric}': 79.0 / scale}
        settings = dict(attack=dict(max_iters=5))
        records = [dict(image='a', iters=3, status='converged', seconds=0.5),
                   dict(image='b', iters=5, status='max_iters', seconds=0.7)]
        if attack == 'worstcase':
            members = ['PGD', 'SegPGD'] if seg else ['DetPGD']
            metrics.update({f'advr[{m}]/{metric}': (6.0 + k) / scale
                            for k, m in enumerate(members)})
            settings = dict(attack=dict(attacks=[dict(type=m, epsilon=4.0, max_iters=10)
                                                 for m in members]))
            records = [dict(r, winner=members[0]) for r in records]
        if '--perturbations' in test_args:
            metrics[f'advr/{metric}'] = 60.0 / scale
            settings['transfer_from'] = [test_args[test_args.index('--perturbations') + 1]]
        elif attack == 'dag':
            _write(osp.join(work_dir, 'figures', 'a.png'), 'png')
        if '--save-perturbations' in test_args:
            os.makedirs(osp.join(work_dir, 'perturbations'), exist_ok=True)
        _write(osp.join(work_dir, 'attack_report.json'), dict(
            metrics=metrics, settings=settings, config=config,
            attack=dict(iters=4.0, p=1e-3, linf=2.0, success=1.0, images=2),
            environment=dict(device='cpu', mmdag='0.x', torch='2.x')))
        _write(osp.join(work_dir, 'attack_records.jsonl'),
               ''.join(json.dumps(r) + '\n' for r in records))
        return 0


@pytest.fixture
def bench(tmp_path):
    for name in ('seg_a', 'seg_b', 'det_c'):
        _write(str(tmp_path / f'{name}.py'), 'x = 1\n')
    lst = str(tmp_path / 'list.py')
    _write(lst, LIST.format(d=tmp_path))
    return lst, str(tmp_path / 'bench')


def test_the_list_with_budgeted_and_transfer_runs(bench, monkeypatch, capsys):
    lst, out = bench
    tool = FakeTestTool()
    monkeypatch.setattr(zoo_run, 'run_model', tool)
    assert run_benchmark(_args(lst, out, transfer=True), 'test.py', 'ROOT') == 0
    # three models, their three worst-case runs, the two segmentors' two transfer runs
    assert len(tool.calls) == 3 + 3 + 2
    attacks = [c[c.index('--attack') + 1] for c in tool.calls]
    assert attacks == ['dag'] * 3 + ['worstcase'] * 3 + ['dag'] * 2
    assert '--save-perturbations' in tool.calls[0]
    assert tool.calls[3][-3:] == ['--attack-options', 'epsilon=4', 'attacks=[pgd,segpgd]']
    assert 'attacks=[detpgd]' in tool.calls[5]
    printed = capsys.readouterr()
    assert '3 models: 3 with results' in printed.out and 'ORIG' in printed.out
    assert 'seg_a: attacking' in printed.err and 'worst case' in printed.out
    rows = json.load(open(osp.join(out, 'benchmark.json')))['rows']
    assert [r['model'] for r in rows] == ['seg_a', 'seg_b', 'det_c']
    assert [r['metric'] for r in rows] == ['mIoU', 'mIoU', 'mAP']
    assert rows[0]['attacks']['members'] == {'PGD': 6.0, 'SegPGD': 7.0}
    assert rows[2]['attacks']['members'] == {'DetPGD': 6.0}
    assert rows[0]['attacks']['worst'] == 5.0 and rows[0]['attacks']['wins'] == {'PGD': 2}
    cells = json.load(open(osp.join(out, 'transfer.json')))['cells']
    assert {(c['made_on'], c['applied_to']): c['drop'] for c in cells} == {
        ('seg_a', 'seg_a'): 75.0, ('seg_b', 'seg_b'): 75.0, ('det_c', 'det_c'): 75.0,
        ('seg_a', 'seg_b'): 20.0, ('seg_b', 'seg_a'): 20.0}
    pics = set(os.listdir(osp.join(out, 'pictures')))
    assert {'variants.png', 'seg_a_figure1.png', 'seg_a_iterations.png'} <= pics
    # a rerun runs nothing, says so, and rewrites no table
    stamp = os.stat(osp.join(out, 'benchmark.md')).st_mtime_ns
    assert run_benchmark(_args(lst, out, transfer=True), 'test.py', 'ROOT') == 0
    assert len(tool.calls) == 8
    printed = capsys.readouterr()
    assert printed.err.count('finished earlier with these settings, skipped') == 8
    assert 'nothing to run, every model finished earlier' in printed.out
    assert os.stat(osp.join(out, 'benchmark.md')).st_mtime_ns == stamp
    # other settings: attacked again, the earlier report kept aside
    assert run_benchmark(_args(lst, out, models=['seg_b'], attacks=['none'],
                               attack_options=dict(max_iters=9)), 'test.py', 'ROOT') == 0
    assert len(tool.calls) == 9 and tool.calls[-1][-2:] == ['--attack-options', 'max_iters=9']
    assert 'seg_b: settings changed since the run' in capsys.readouterr().err


def test_a_failed_model_is_a_row_and_exit_1(bench, monkeypatch, capsys):
    lst, out = bench
    tool = FakeTestTool(fail={'seg_b'})
    monkeypatch.setattr(zoo_run, 'run_model', tool)
    assert run_benchmark(_args(lst, out, attacks=['none'], det_attacks=['none']),
                         'test.py', 'ROOT') == 1
    printed = capsys.readouterr()
    assert 'seg_b: FAILED (exit 2): error: checkpoint x not found' in printed.err
    assert '3 models: 2 with results, 1 failed (seg_b)' in printed.out
    rows = json.load(open(osp.join(out, 'benchmark.json')))['rows']
    assert rows[1] == dict(model='seg_b', failed='error: checkpoint x not found')
    assert json.load(open(osp.join(out, 'seg_b', 'zoo_entry.json')))['status'] == 'failed'


def test_refusals_are_one_line(bench, monkeypatch):
    lst, out = bench
    monkeypatch.setattr(zoo_run, 'run_model', FakeTestTool())
    for kw, msg in ((dict(models=['x']), "['x'] not in "),
                    (dict(attacks=['dag']), "--attacks ['dag']: budgeted attacks are "),
                    (dict(det_attacks=['nope']), "--det-attacks ['nope']: budgeted"),
                    (dict(launcher='slurm'), '--launcher slurm needs --partition NAME')):
        with pytest.raises(MMDagError) as e:
            run_benchmark(_args(lst, out, **kw), 'test.py', 'ROOT')
        assert msg in str(e.value) and '\n' not in str(e.value), kw
    with pytest.raises(MMDagError, match='model list .* not found'):
        run_benchmark(_args(lst + 'x', out), 'test.py', 'ROOT')
    blocker = osp.join(osp.dirname(out), 'file')
    _write(blocker, '')
    with pytest.raises(MMDagError, match='cannot create .*: pass --work-dir DIR'):
        run_benchmark(_args(lst, osp.join(blocker, 'b')), 'test.py', 'ROOT')


def test_budget_settings_over_the_list(bench):
    lst, _ = bench
    assert budget_settings(lst) == (['pgd', 'segpgd'], ['detpgd'], dict(epsilon=4))
    assert budget_settings(lst, ['PGD'], ['none'], dict(max_iters=3)) == \
        (['pgd'], [], dict(epsilon=4, max_iters=3))


def test_followup_entries():
    entries = [dict(name=n, attack_options={}) for n in ('a', 'b', 'd')]
    rows = dict(a=dict(metric='mIoU'), b=dict(metric='mIoU'), d=dict(metric='mAP'))
    runs = budget_entries(entries, rows, 'B', ['pgd'], [], dict(epsilon=4))
    assert [(r['name'], r['model'], r['work_dir']) for r in runs] == \
        [('a.attacks', 'a', osp.join('B', 'a', 'attacks')),
         ('b.attacks', 'b', osp.join('B', 'b', 'attacks'))]
    assert runs[0]['attack'] == 'worstcase'
    assert runs[0]['attack_options'] == dict(epsilon=4, attacks=['pgd'])
    pairs = transfer_entries(entries, rows, 'B')
    assert [(p['source'], p['target']) for p in pairs] == [('a', 'b'), ('b', 'a')]
    assert pairs[0]['transfer_from'] == osp.abspath(osp.join('B', 'a', 'perturbations'))


def test_failure_reason_and_summary_lines(tmp_path):
    assert failure_reason(str(tmp_path)) == 'no log'
    _write(str(tmp_path / 'benchmark.log'), 'a\nerror: one\nb\n')
    assert failure_reason(str(tmp_path)) == 'error: one'
    _write(str(tmp_path / 'benchmark.log'), 'a\nlast\n\n')
    assert failure_reason(str(tmp_path)) == 'last'
    row = dict(model='m', metric='mIoU', ORIG=80.0, ADVR=5.0, PERM=79.0, iters_mean=4.0,
               iters_median=4, success=0.5, images=2, sec_per_image=0.6)
    assert summary_line(1, 2, row, 12.3) == (
        '[zoo] 1/2 m: mIoU ORIG 80.0 ADVR 5.0 PERM 79.0 | iters 4.0 (median 4), success '
        '50.0% | 2 images, 0.6 s/img attack, 12 s wall')
    assert 'under the perturbations of s 5.0 (drop 75.0)' in summary_line(1, 2, row, 1, 's')
    assert summary_line(2, 2, None, 1) == '[zoo] 2/2: no report'


def test_launch_refuses_slurm_without_partition():
    with pytest.raises(MMDagError, match='--partition'):
        launch(_args('l.py', None, launcher='slurm'), 'm', ['CFG'], 'test.py')
