"""The speed benchmark in this process (mmdag.benchmark.speed): the config
lookup, the methods timed on the demo segmentor, the table and its goals."""
import argparse
import os.path as osp

import pytest

from mmdag.benchmark import speed
from mmdag.benchmark.speed import config_path, goal_lines, run
from mmdag.errors import MMDagError
from conftest import TINY


def _args(**kw):
    """The tool's arguments, its defaults."""
    args = argparse.Namespace(
        config=TINY, checkpoint=None, data_root=None, num_images=8, iters=20, gamma=0.5,
        methods=list(speed.DEFAULT_METHODS), device=None, repeats=1, amp=False,
        channels_last=False, cfg_options={})
    vars(args).update(kw)
    return args


def test_config_lookup():
    import mmseg
    assert config_path(TINY) == TINY
    assert config_path('mmdag::demo/fcn_tiny_synthetic-voc.py').endswith(
        osp.join('configs', 'demo', 'fcn_tiny_synthetic-voc.py'))
    assert osp.isfile(config_path('mmdag::demo/fcn_tiny_synthetic-voc.py'))
    assert config_path('mmseg::fcn/x.py') == osp.join(osp.dirname(mmseg.__file__), '.mim',
                                                      'configs', 'fcn', 'x.py')
    assert config_path('no_such_package::a/b.py') is None
    assert config_path('nowhere/x.py') == 'nowhere/x.py'
    with pytest.raises(MMDagError, match='config nowhere/x.py not found'):
        run(_args(config='nowhere/x.py'))


def test_methods_in_process(tiny_voc, capsys):
    # the subprocess check of the tool (tests/test_engine/test_benchmark.py) times them all
    rows = run(_args(data_root=tiny_voc, num_images=2, iters=2, device='cpu',
                     methods=['floor', 'mmdag']))
    assert [name for name, _, _ in rows] == ['floor', 'mmdag']
    # random weights, clean prediction as labels: every target starts correct
    assert all(best[1] == 4 and best[0] > 0 for _, best, _ in rows)   # 2 images x 2 iterations
    out = capsys.readouterr().out
    assert f"model {osp.basename(TINY)}, 2 images 120x160, 2 iterations, device cpu (" in out
    assert 'mmdag time / floor time (goal <= 1.15) = ' in out


def test_a_missing_data_root_is_one_line(tmp_path):
    with pytest.raises(MMDagError) as e:
        run(_args(data_root=str(tmp_path / 'none'), device='cpu'))
    assert str(e.value).startswith('test data root') and '\n' not in str(e.value)
    assert str(e.value).endswith('`python tools/make_synthetic_voc.py DIR` makes a small '
                                 'VOC-format set)')


def test_table_rows_and_notes():
    args = _args(iters=10, scope='mmseg', amp=True)
    rows = [('floor', (1.0, 10, 5.0), ''), ('mmdag', (1.1, 10, 6.0), ''),
            ('adv_lib', None, 'adv_lib not installed')]
    text = speed.format_rows(rows, args, 'cpu', 2, (3, 120, 160))
    assert ', 2 images 120x160, 10 iterations, device cpu (' in text and ', amp' in text
    assert 'floor' in text and '100.00' in text and 'adv_lib        adv_lib not installed' in text
    assert '  mmdag time / floor time (goal <= 1.15) = 1.10 (met)' in text


def test_goal_lines_on_cuda_are_stricter():
    # (seconds, image-iterations, MiB): floor 1.0, mmdag 1.1, plain 12 s per image-iteration
    rows = [('floor', (10.0, 10, 1.0), ''), ('mmdag', (11.0, 10, 1.0), ''),
            ('plain', (120.0, 10, 1.0), '')]
    cpu = '\n'.join(goal_lines(rows, cuda=False))
    gpu = '\n'.join(goal_lines(rows, cuda=True))
    assert 'floor time (goal <= 1.15) = 1.10 (met)' in cpu
    assert 'floor time (goal <= 1.05) = 1.10 (missed)' in gpu
    assert 'plain loop speed (goal >= 10) = 10.91 (met)' in gpu
    assert 'goal >= 10' not in cpu


def test_goal_line_of_the_step_over_the_attack_class():
    rows = [('mmdag', (10.4, 10, 1.0), ''), ('dag_class', (10.0, 10, 1.0), '')]
    assert '  mmdag step time / DAG class time (goal <= 1.03) = 1.04 (missed)' in goal_lines(rows)
    rows = [('mmdag', (10.2, 10, 1.0), ''), ('dag_class', (10.0, 10, 1.0), '')]
    assert '  mmdag step time / DAG class time (goal <= 1.03) = 1.02 (met)' in goal_lines(rows)


def test_goal_lines_of_the_budgeted_attacks():
    rows = [('floor', (10.0, 10, 1.0), ''), ('pgd', (10.5, 10, 1.0), ''),
            ('apgd', (12.0, 10, 1.0), '')]
    lines = goal_lines(rows)
    assert '  pgd time / floor time (goal <= 1.1) = 1.05 (met)' in lines
    assert '  apgd time / floor time (goal <= 1.1) = 1.20 (missed)' in lines
    assert not any('pgd' in line for line in goal_lines(rows, segmentation=False))
