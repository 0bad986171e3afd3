"""tools/analysis/benchmark.py prints one row per method, measured in one run
(its pieces in this process: tests/test_benchmark/test_speed.py)."""
import os.path as osp
import re

import pytest

from conftest import TINY, run_tool

DET = 'configs/demo/faster-rcnn_tiny_synthetic-voc.py'


def table(stdout):
    rows = {}
    for line in stdout.splitlines():
        m = re.match(r'^(\w+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+(\d+)\s+(\d+)$', line)
        if m:
            rows[m.group(1)] = [float(v) for v in m.groups()[1:]]
    return rows


def test_benchmark_prints_every_method(tiny_voc):
    res = run_tool(['tools/analysis/benchmark.py', '--config', TINY, '--data-root', tiny_voc,
                    '--num-images', '2', '--iters', '2', '--device', 'cpu'])
    rows = table(res.stdout)
    assert {'floor', 'mmdag', 'dag_class', 'plain'} <= set(rows), res.stdout
    assert rows['floor'][1] == 1.0
    for name, (ms, ratio, ips, its, mib) in rows.items():
        # random weights, clean prediction as labels: every target starts correct
        assert ms > 0 and ratio > 0 and ips > 0 and mib > 0, name
        assert its == 4, (name, its)   # 2 images x 2 iterations each
    assert '2 images 120x160, 2 iterations, device cpu' in res.stdout
    assert 'adv_lib' in res.stdout   # a row, or the line saying how to install it
    assert 'mmdag time / floor time (goal <= 1.15) = ' in res.stdout


@pytest.mark.slow   # a zoo Faster R-CNN timed method by method: about 25 s on a CPU
def test_benchmark_on_a_two_stage_detector_with_random_weights(tiny_voc):
    # random weights: every overlapping proposal is a target, labelled with the
    # clean prediction, so that every method makes its iterations
    res = run_tool(['tools/analysis/benchmark.py', '--config', DET,
                    '--data-root', osp.dirname(tiny_voc) + '/', '--num-images', '2', '--iters', '2',
                    '--device', 'cpu', '--methods', 'floor', 'mmdag', 'stock_roialign', 'plain'])
    rows = table(res.stdout)
    assert set(rows) == {'floor', 'mmdag', 'stock_roialign', 'plain'}, res.stdout
    assert rows['floor'][3] == 4
    for name in ('mmdag', 'stock_roialign', 'plain'):
        assert rows[name][3] == 4, (name, res.stdout)
    assert 'stock RoIAlign backward time / mmdag time = ' in res.stdout
    assert 'goal <= 1.15' not in res.stdout   # a segmentation goal


def test_benchmark_names_a_missing_data_root(tmp_path):
    res = run_tool(['tools/analysis/benchmark.py', '--data-root', str(tmp_path / 'none')],
                   check=False)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1].startswith('error: test data root')


# 16 s on 2 cores (2026-12-07): with the slow checks, to keep the fast suite under 15 min
@pytest.mark.slow
def test_benchmark_levers_run_and_are_named(tiny_voc):
    # --amp (bfloat16 on the CPU) and --channels-last: every method still
    # makes its iterations, and the header says the numbers are not float32's
    res = run_tool(['tools/analysis/benchmark.py', '--config', TINY, '--data-root', tiny_voc,
                    '--num-images', '2', '--iters', '2', '--device', 'cpu', '--amp',
                    '--channels-last', '--methods', 'floor', 'mmdag', 'plain'])
    rows = table(res.stdout)
    assert set(rows) == {'floor', 'mmdag', 'plain'}, res.stdout
    assert all(r[3] == 4 for r in rows.values()), res.stdout
    assert 'device cpu (' in res.stdout and ', amp, channels_last' in res.stdout
