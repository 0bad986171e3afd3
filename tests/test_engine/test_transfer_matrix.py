"""Transfer matrices from DAG reports (mmdag.summary.transfer_matrix and its tool)."""
import json
import os.path as osp

import pytest

from mmdag.summary import format_matrix, transfer_matrix
from conftest import run_tool


def rep(config, orig, advr, metric='mIoU', transfer_from=None):
    return dict(config=config, settings=dict(transfer_from=transfer_from),
                metrics={f'orig/{metric}': orig, f'advr/{metric}': advr, f'perm/{metric}': orig})


def test_rows_sources_columns_targets_cells_drops():
    a = rep('configs/a.py', 80.0, 10.0)
    b = rep('configs/b.py', 0.70, 0.05, metric='pascal_voc/mAP')      # mmdet: fractions
    a_on_b = rep('configs/b.py', 0.70, 0.50, metric='pascal_voc/mAP',
                 transfer_from=['/w/A/perturbations'])
    ab_on_c = rep('configs/c.py', 60.0, 30.0,
                  transfer_from=['/w/A/perturbations', '/w/B/perturbations'])
    rows, cols, cells = transfer_matrix(
        {'A': a, 'B': b, 'A_on_B': a_on_b, 'AB_on_C': ab_on_c},
        {'/w/A/perturbations': a, '/w/B/perturbations': b})
    assert rows == ['a', 'b', 'a + b'] and cols == ['a', 'b', 'c']
    assert cells[('a', 'a')] == pytest.approx(70.0)
    assert cells[('b', 'b')] == pytest.approx(65.0)       # in %, like the table
    assert cells[('a', 'b')] == pytest.approx(20.0)
    assert cells[('a + b', 'c')] == pytest.approx(30.0)
    table = format_matrix(rows, cols, cells).splitlines()
    assert table[2] == '| a | 70.00 | 20.00 |  |'


def test_tool_names_a_source_by_the_run_that_saved_it(tmp_path):
    src = tmp_path / 'A'
    (src / 'perturbations').mkdir(parents=True)
    (src / 'attack_report.json').write_text(json.dumps(rep('configs/a.py', 80.0, 10.0)))
    dst = tmp_path / 'A_on_B'
    dst.mkdir()
    (dst / 'attack_report.json').write_text(json.dumps(
        rep('configs/b.py', 50.0, 45.0, transfer_from=[str(src / 'perturbations')])))
    out = tmp_path / 'm.json'
    res = run_tool(['tools/analysis/transfer_matrix.py', str(src), str(dst), '--out', str(out)])
    assert '| a | 70.00 | 5.00 |' in res.stdout
    cells = json.load(open(out))['cells']
    assert dict(made_on='a', applied_to='b', drop=5.0) in cells
    bad = run_tool(['tools/analysis/transfer_matrix.py', str(tmp_path / 'none')], check=False)
    assert bad.returncode != 0 and 'no attack_report.json' in bad.stderr
    assert osp.isdir(src)
