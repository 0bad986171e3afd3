"""Per-image records (attack_records.jsonl): written whole, read safely, kept."""
import json
import math
import os

import pytest

from mmdag.engine.records import (append_records, convergence, make_records, read_records,
                                  start_records, unique_records)


def stats(iters, trace, status='converged'):
    return dict(iters=iters, p=0.01, linf=3.0, correct_frac=trace[-1] if trace else 0.0,
                num_targets=10, num_correct=10, converged=status == 'converged',
                status=status, trace=trace, forwards=len(trace), backwards=iters)


def test_records_round_trip_and_cut_lines_are_skipped(tmp_path):
    path = str(tmp_path / 'attack_records.jsonl')
    recs = make_records(['a', 'b'], ['/x/a.jpg', None],
                        [stats(2, [1.0, 0.5, 0.0]), stats(0, [], 'non_finite')],
                        seconds=3.0, rank=1, batch=4)
    recs[1]['correct_frac'] = float('nan')
    append_records(path, recs)
    got, skipped = read_records(path)
    assert skipped == 0 and [r['image'] for r in got] == ['a', 'b']
    assert got[0]['seconds'] == 1.5 and got[0]['batch_seconds'] == 3.0
    assert got[0]['rank'] == 1 and got[0]['batch'] == 4 and got[0]['trace'] == [1.0, 0.5, 0.0]
    assert math.isnan(got[1]['correct_frac'])
    # a kill in the middle of a write: the unfinished line is not data
    with open(path, 'ab') as f:
        f.write(b'{"image": "c", "iters": 3, "tr')
    got, skipped = read_records(path)
    assert [r['image'] for r in got] == ['a', 'b'] and skipped == 1
    # ... nor is it once later lines were appended after it
    append_records(path, make_records(['d'], [None], [stats(1, [1.0, 0.0])], 1.0, 0, 5))
    got, skipped = read_records(path)
    assert [r['image'] for r in got] == ['a', 'b'] and skipped == 1   # "c...d" is one bad line
    assert read_records(str(tmp_path / 'none.jsonl')) == ([], 0)


def test_a_new_run_keeps_the_old_records_aside(tmp_path):
    path = str(tmp_path / 'attack_records.jsonl')
    assert start_records(path) is None
    append_records(path, make_records(['a'], [None], [stats(1, [1.0, 0.0])], 1.0, 0, 0))
    kept = start_records(path)
    assert not os.path.exists(path) and os.path.isfile(kept)
    assert kept.startswith(str(tmp_path / 'attack_records.')) and kept.endswith('.jsonl')
    append_records(path, make_records(['a'], [None], [stats(1, [1.0, 0.0])], 1.0, 0, 0))
    kept2 = start_records(path)
    assert kept2 != kept and os.path.isfile(kept) and os.path.isfile(kept2)


def test_convergence_carries_stopped_images_forward():
    recs = [dict(image='a', **stats(2, [1.0, 0.5, 0.0])),
            dict(image='b', **stats(4, [1.0, 0.8, 0.6, 0.4, 0.2], 'max_iters')),
            dict(image='c', **stats(0, [], 'none_correct'))]   # not attacked: left out
    c = convergence(recs)
    assert c['images'] == 2 and c['iterations'] == 4
    assert c['median'] == pytest.approx([1.0, 0.65, 0.3, 0.2, 0.1])
    assert c['running'] == pytest.approx([1.0, 1.0, 0.5, 0.5, 0.0])
    assert convergence(recs[2:]) is None
    json.dumps(c)


def test_unique_records_keep_the_first_of_each_image():
    # a distributed sampler pads a rank's last batch with a copy of a test image
    recs = [dict(image='a', rank=0), dict(image='b', rank=1), dict(image='a', rank=1)]
    assert unique_records(recs) == recs[:2]
