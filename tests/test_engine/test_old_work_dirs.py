"""What mmdag wrote before 0.2, when every name said DAG, read by today's mmdag.

Held here: the mapping from the old names to today's (metric keys ``dag/...``
to ``attack/...``, ``dag_report.json`` to ``attack_report.json``, the hooks'
and the metric's type names), that today's report of a run is the old one
key by key once those are mapped, and that a work dir written before 0.2
resumes.

``tests/fixtures/pre_0.2/`` holds what mmdag 0.1.0 wrote for :data:`COMMAND`
(a worst case of PGD and SegPGD at epsilons 4 and 8, 2 iterations, the
random-weight demo FCN on the 6 val images of ``tiny_voc``): its report and
its state's ``run.json`` (the checkpoint path and the data root replaced by
placeholders, the fingerprint recomputed over the file as it is).
"""
import json
import os
import os.path as osp
import warnings

import pytest

from mmdag.contract import (OLD_FILE_NAMES, OLD_TYPE_NAMES, RECORDS_FILE, REPORT_FILE, STATE_DIR,
                            upgrade_key, upgrade_keys, upgrade_type_name, work_path)
from mmdag.summary import format_table, read_report, sweep_section
from conftest import ROOT, run_tool

OLD = osp.join(ROOT, 'tests', 'fixtures', 'pre_0.2')
#: the run of the fixture (the config relative to the clone, as the report names it)
COMMAND = ['tools/test.py', 'configs/demo/fcn_tiny_synthetic-voc.py', None,
           '--attack', 'worstcase', '--attack-options', 'attacks=pgd,segpgd', 'max_iters=2',
           '--epsilons', '4', '8']


def test_metric_keys_map_to_todays():
    assert upgrade_key('dag/linf') == 'attack/linf'
    assert upgrade_key('dag@0.5/iters') == 'attack@0.5/iters'
    for same in ('advr/mIoU', 'advr@4/mIoU', 'tide/advr/dAP/cls', 'errors/advr/missed',
                 'dagger/x', 'dag', 'attack/linf'):
        assert upgrade_key(same) == same
    assert list(upgrade_keys({'b/x': 1, 'dag/p': 2})) == ['b/x', 'attack/p']   # order kept


def test_old_type_names_build_and_read_as_todays():
    from mmdag.apis import add_attack_to_config
    from mmdag.apis.config import add_dag_to_config
    from mmdag.engine import AttackHook, AttackResumeHook
    from mmdag.evaluation import AttackMetric
    from mmdag.registry import HOOKS, METRICS
    assert HOOKS.get('DAGAttackHook') is AttackHook is HOOKS.get('AttackHook')
    assert HOOKS.get('DAGResumeHook') is AttackResumeHook
    assert METRICS.get('DAGMetric') is AttackMetric is METRICS.get('AttackMetric')
    assert set(OLD_TYPE_NAMES.values()) <= set(HOOKS.module_dict) | set(METRICS.module_dict)
    assert upgrade_type_name('mmdag.DAGMetric') == 'mmdag.AttackMetric'
    assert upgrade_type_name('DAGAttackHook') == 'AttackHook'
    assert upgrade_type_name('mmseg.DAGMetric') == 'mmseg.DAGMetric'   # not ours
    with pytest.warns(DeprecationWarning, match='AttackHook'):
        from mmdag.engine import DAGAttackHook
    assert DAGAttackHook is AttackHook
    # a config of an old user names the old types: they are found, not added twice
    from mmengine.config import Config
    cfg = Config(dict(custom_hooks=[dict(type='mmdag.DAGAttackHook', attack=dict(max_iters=3))],
                      test_evaluator=dict(type='mmdag.DAGMetric', metric=dict(type='IoUMetric'))))
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        add_attack_to_config(cfg, dict(gamma=0.2))
    assert [h['type'] for h in cfg.custom_hooks] == [
        'mmdag.DAGAttackHook', 'mmdag.AttackReportHook', 'mmdag.AttackResumeHook',
        'mmdag.CheckpointCheckHook']
    assert cfg.custom_hooks[0]['attack'] == dict(max_iters=3, gamma=0.2)
    assert cfg.test_evaluator['type'] == 'mmdag.DAGMetric'
    with pytest.warns(DeprecationWarning, match='add_attack_to_config'):
        add_dag_to_config(cfg)


def test_an_old_report_reads_with_todays_keys():
    assert work_path(OLD, REPORT_FILE) == osp.join(OLD, 'dag_report.json')
    assert work_path(OLD, STATE_DIR) == osp.join(OLD, 'dag_state')
    assert work_path(OLD, RECORDS_FILE) == osp.join(OLD, RECORDS_FILE)   # neither: today's
    report = read_report(OLD)
    assert report == read_report(osp.join(OLD, 'dag_report.json'))
    m = report['metrics']
    assert not [k for k in m if k.startswith('dag')]
    for k in ('attack/linf', 'attack@4/linf', 'attack/iters', 'advr/mIoU', 'advr@4/mIoU'):
        assert k in m, k
    with open(osp.join(OLD, 'dag_report.json')) as f:
        raw = json.load(f)['metrics']
    assert m['attack/linf'] == raw['dag/linf'] and m['attack@4/linf'] == raw['dag@4/linf']
    # the summaries read old reports, and old metrics dicts, as today's
    row = format_table({'old': raw}, reference=False).splitlines()[2].split()
    assert row[-1] == f"{100 * raw['dag/success']:.1f}%" and float(row[-2]) == round(
        raw['dag/linf'], 2)
    curve = sweep_section(raw, [4, 8])
    assert [r['attack']['linf'] for r in curve['rows']] == [raw['dag@4/linf'], raw['dag/linf']]


def _keys(tree, path=''):
    """Every key path of a JSON tree, with the leaf's kind."""
    if isinstance(tree, dict):
        return {p for k, v in tree.items() for p in _keys(v, f'{path}/{k}')}
    if isinstance(tree, list):
        return {p for k, v in enumerate(tree) for p in _keys(v, f'{path}[{k}]')}
    return {(path, type(tree).__name__)}


def _texts(tree, path=''):
    """The text and integer leaves of a JSON tree by path (the floats are
    this CPU's: another CPU rounds differently)."""
    if isinstance(tree, dict):
        return {p: v for k, x in tree.items() for p, v in _texts(x, f'{path}/{k}').items()}
    if isinstance(tree, list):
        return {p: v for k, x in enumerate(tree) for p, v in _texts(x, f'{path}[{k}]').items()}
    return {} if isinstance(tree, float) else {path: tree}


def _downgrade(work_dir):
    """Today's work dir as mmdag 0.1.0 wrote it: the old file names, the old
    type names in ``run.json`` (its fingerprint over the file as it is then)."""
    from mmdag.engine.run_settings import fingerprint
    state = osp.join(work_dir, STATE_DIR)
    with open(osp.join(state, 'run.json')) as f:
        text = f.read()
    for old, new in OLD_TYPE_NAMES.items():
        text = text.replace(f'"{new}"', f'"{old}"').replace(f'"mmdag.{new}"', f'"mmdag.{old}"')
    run = json.loads(text)
    run['fingerprint'] = fingerprint(run)
    with open(osp.join(state, 'run.json'), 'w') as f:
        json.dump(run, f, indent=1, sort_keys=True)
    for new, old in OLD_FILE_NAMES.items():
        if osp.exists(osp.join(work_dir, new)):
            os.replace(osp.join(work_dir, new), osp.join(work_dir, old))
    return run


# 2 runs of tools/test.py, 25-35 s together (2 cores)
@pytest.mark.slow
def test_todays_report_is_the_old_one_and_an_old_work_dir_resumes(tiny_voc,
                                                                  random_seg_checkpoint,
                                                                  tmp_path):
    wd = str(tmp_path / 'run')
    cmd = list(COMMAND)
    cmd[2] = random_seg_checkpoint
    opts = ['--cfg-options', f'test_dataloader.dataset.data_root={tiny_voc}',
            'test_dataloader.batch_size=2']
    run_tool(cmd + ['--work-dir', wd] + opts, env=dict(OMP_NUM_THREADS='1'))
    assert not [n for n in os.listdir(wd) if n.startswith('dag')]
    new = read_report(wd)
    with open(osp.join(wd, REPORT_FILE)) as f:
        assert json.load(f) == new   # written with today's keys
    old = read_report(OLD)

    # key by key, once the keys are mapped; every text and count the same but
    # the version, the checkpoint's path and the files' names (renamed)
    assert _keys(new) == _keys(old)
    renamed = {v: k for k, v in OLD_FILE_NAMES.items()}
    old_texts = {p: renamed.get(v, v) for p, v in _texts(old).items()
                 if p not in ('/environment/mmdag', '/checkpoint')}
    new_texts = {p: v for p, v in _texts(new).items()
                 if p not in ('/environment/mmdag', '/checkpoint')}
    assert new_texts == old_texts

    # the run as 0.1.0 would have left it, its last batch unfinished: it resumes
    run = _downgrade(wd)
    with open(osp.join(OLD, 'dag_state', 'run.json')) as f:
        fixture = json.load(f)
    assert _keys(run) == _keys(fixture)
    varying = ('/checkpoint/sha256', '/fingerprint', '/test_dataloader/dataset/data_root')
    assert ({p: v for p, v in _texts(run).items() if p not in varying}
            == {p: v for p, v in _texts(fixture).items() if p not in varying})
    last = sorted(n for n in os.listdir(osp.join(wd, 'dag_state')) if n.endswith('.npz'))[-1]
    os.remove(osp.join(wd, 'dag_state', last))
    res = run_tool(cmd + ['--work-dir', wd, '--resume'] + opts, env=dict(OMP_NUM_THREADS='1'))
    log = res.stdout + res.stderr
    assert 'resuming: 4 of 6 images done by the earlier run, 2 to go' in log, log[-3000:]
    assert osp.isdir(osp.join(wd, STATE_DIR)) and not osp.exists(osp.join(wd, 'dag_state'))
    assert osp.isfile(osp.join(wd, RECORDS_FILE))
    assert read_report(wd) == new
