"""The resume state files hold data only: an old pickle is never unpickled,
and the new format restores the metrics' per-image results exactly."""
import logging
import math
import os
import os.path as osp
import pickle
from fractions import Fraction
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from mmdag.engine import resume
from mmdag.errors import MMDagError
from conftest import TINY


class _WritesMarker:
    """Unpickling this object creates a file: a stand-in for any code."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return open, (self.path, 'w')


def _plant_pickle(work_dir, marker):
    d = osp.join(work_dir, 'attack_state')
    os.makedirs(d, exist_ok=True)
    with open(osp.join(d, 'x-rank0-batch000000.pkl'), 'wb') as f:
        pickle.dump([dict(name='img0', index=0, record=None,
                          results=[dict(orig=(), advr=(), perm=(), _stats={})],
                          payload=_WritesMarker(marker))], f)


def _refused(call):
    """The MMDagError that ``call`` raised (None if none)."""
    try:
        call()
    except MMDagError as e:
        return e
    return None


def test_an_old_pickle_is_refused_by_read_state_and_never_unpickled(tmp_path):
    marker = str(tmp_path / 'marker')
    _plant_pickle(str(tmp_path), marker)
    e = _refused(lambda: resume.read_state(str(tmp_path)))
    assert not osp.exists(marker), 'the pickle was loaded'
    assert e is not None
    msg = str(e)
    assert '\n' not in msg and 'older mmdag' in msg and 'cannot be read safely' in msg
    assert 'rerun without --resume' in msg


class _Dataset:
    def __init__(self, names):
        self.names = names

    def __len__(self):
        return len(self.names)

    def get_data_info(self, i):
        return dict(img_path=f'/data/{self.names[i]}.jpg')


def _runner(work_dir, names=('img0', 'img1')):
    """What AttackHook's resume reads of a runner: the demo config, one
    AttackMetric around mmseg's IoUMetric, a dataset of ``names``."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from mmdag.apis.config import add_attack_to_config
    from mmdag.evaluation import AttackMetric
    init_default_scope('mmseg')
    cfg = Config.fromfile(TINY)
    add_attack_to_config(cfg)
    cfg.load_from = None
    metric = AttackMetric(metric=dict(type='IoUMetric', iou_metrics=['mIoU']))
    dataset = _Dataset(list(names))
    loader = torch.utils.data.DataLoader(list(range(len(names))), batch_size=1)
    from mmengine.logging import MessageHub

    from mmdag.contract import RunAttack
    from mmdag.engine import AttackHook
    from mmdag.engine.wiring import publish

    # what the attack hook publishes for the resume hook
    hub = MessageHub.get_instance('mmdag_resume_state')
    publish(hub, RunAttack(settings={}, environment={},
                           state=AttackHook(records=None).state_settings()))
    return SimpleNamespace(work_dir=work_dir, cfg=cfg, message_hub=hub,
                           test_dataloader=SimpleNamespace(dataset=dataset),
                           test_loop=SimpleNamespace(evaluator=SimpleNamespace(metrics=[metric]),
                                                     dataloader=loader),
                           logger=logging.getLogger('test_resume_state'))


def test_the_resume_path_never_unpickles_a_state_file(tmp_path):
    """A work dir received from someone else: its settings match this run,
    its state is a pickle. Resuming refuses it in one line; no code runs."""
    from mmdag.engine import AttackResumeHook
    wd = str(tmp_path / 'wd')
    runner = _runner(wd)
    hook = AttackResumeHook(resume=True)
    hook._index = {'img0': 0, 'img1': 1}
    resume.write_settings(wd, hook._settings(runner))
    marker = str(tmp_path / 'marker')
    _plant_pickle(wd, marker)
    e = _refused(lambda: hook._start_or_resume(runner))
    assert not osp.exists(marker), 'the pickle was loaded'
    assert e is not None and 'older mmdag' in str(e)


# ------------------------------------------------------------ round trips

def _iou_like(seed):
    """mmseg IoUMetric: (area_intersect, area_union, area_pred_label, area_label)."""
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randint(0, 5000, (21,), generator=g).float() for _ in range(4))


def _voc_like(seed):
    """mmdet VOCMetric: (gt dict of arrays, one array of detections per class)."""
    rng = np.random.default_rng(seed)
    gt = dict(bboxes=rng.random((3, 4), dtype=np.float32) * 100,
              labels=rng.integers(0, 20, 3).astype(np.int64),
              bboxes_ignore=np.zeros((0, 4), dtype=np.float32),
              labels_ignore=np.zeros((0,), dtype=np.int64))
    dets = [rng.random((k, 5), dtype=np.float32) for k in (0, 2, 0, 1)]
    return gt, dets


def _stats(seed):
    """The attack statistics AttackMetric keeps (and the odd values they may hold)."""
    return dict(p=0.1 * seed + 1 / 3, linf=float('nan') if seed else 7.5, iters=200 - seed,
                num_targets=1234, num_correct=17, correct_frac=17 / 1234, converged=bool(seed),
                status='stopped', trace=[1.0, 0.5, 17 / 1234], forwards=201, backwards=200,
                neg_zero=-0.0, big=2 ** 70, none=None, np_f32=np.float32(0.1),
                np_i64=np.int64(-3), np_bool=np.bool_(True), tensor0=torch.tensor(2.5),
                half=torch.tensor([1.5, -2.25], dtype=torch.float16),
                bf16=torch.tensor([[0.1, 3.0]], dtype=torch.bfloat16),
                flags=torch.tensor([True, False]), ints=torch.arange(6, dtype=torch.int32)[::2],
                nested=(1, (2.0, 'x'), [None, ()]), int_keys={0: 'a', (1, 2): [np.uint8(3)]},
                rle=dict(size=[120, 160], counts=b'PX\x00`1'))   # mmdet CocoMetric masks


def _entries(names, start=0):
    return [dict(name=n, index=start + i,
                 record=dict(image=n, iters=3, p=0.25, linf=float('inf'), trace=[1.0, 0.5],
                             status='stopped', img_path=None),
                 results=[dict(orig=_iou_like(3 * i), advr=_iou_like(3 * i + 1),
                               perm=_iou_like(3 * i + 2), _stats=_stats(i)),
                          dict(orig=_voc_like(i), advr=_voc_like(i + 10))])
            for i, n in enumerate(names)]


def _same(a, b, where='value'):
    """Equal in type, dtype, shape and every bit (NaN and -0.0 included)."""
    assert type(a) is type(b), (where, type(a), type(b))
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and a.device == b.device, where

        def bits(t):
            return t.reshape(-1).contiguous().view(torch.uint8).tolist()
        assert bits(a) == bits(b), where
    elif isinstance(a, (np.ndarray, np.generic)):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        assert np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes(), where
    elif isinstance(a, float):
        assert a.hex() == b.hex() if not math.isnan(a) else math.isnan(b), where
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for k, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f'{where}[{k}]')
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for k in a:
            _same(a[k], b[k], f'{where}[{k!r}]')
    else:
        assert a == b, where


def test_state_round_trips_metric_results_exactly_without_pickle(tmp_path):
    wd = str(tmp_path)
    first, second = _entries(['img0', 'img1']), _entries(['img2'], start=2)
    resume.write_batch(wd, 0, 0, 'run', first)
    resume.write_batch(wd, 1, 0, 'run', second)
    files = sorted(os.listdir(resume.state_dir(wd)))
    # data only: each file loads with numpy's pickle switched off, none is a pickle
    assert len(files) == 2 and all(f.endswith('.npz') for f in files), files
    for f in files:
        np.load(osp.join(resume.state_dir(wd), f), allow_pickle=False).close()
    done, bad = resume.read_state(wd)
    assert bad == 0 and sorted(done) == ['img0', 'img1', 'img2']
    for e in first + second:
        _same(e, done[e['name']], e['name'])


def test_state_refuses_what_it_cannot_hold(tmp_path):
    wd = str(tmp_path)
    for bad in (Fraction(1, 3), np.array([object()], dtype=object), np.ma.masked_array([1.0]),
                torch.zeros(2).to_sparse(), {torch.zeros(1): 1}, lambda: 0):
        with pytest.raises(resume.StateTypeError, match=r'state\[0\]'):
            resume.write_batch(wd, 0, 0, 'run', [dict(name='a', index=0, results=[bad])])
    assert not osp.exists(resume.state_dir(wd)) or not os.listdir(resume.state_dir(wd))


def test_a_run_with_an_unholdable_result_is_not_resumable(tmp_path, caplog):
    """The hook's write path: a warning, no file, and no further state."""
    from mmdag.engine import AttackResumeHook
    wd = str(tmp_path / 'wd')
    runner = _runner(wd, names=('img0',))
    hook = AttackResumeHook()
    hook._index = {'img0': 0}
    metric = runner.test_loop.evaluator.metrics[0]
    hook._counts = [{k: 0 for k in metric.result_lists()}]
    for results in metric.result_lists().values():
        results.append(Fraction(1, 3))
    with caplog.at_level(logging.WARNING, logger='test_resume_state'):
        hook._save_state(runner, 0, ['img0'], [dict(image='img0')])
    assert hook._state_ok is False
    assert 'cannot be resumed' in caplog.text and 'fractions.Fraction' in caplog.text
    assert not osp.exists(resume.state_dir(wd)) or not os.listdir(resume.state_dir(wd))


def test_a_state_file_with_pickled_arrays_is_skipped_unread(tmp_path):
    """An .npz whose array is a pickle (numpy's object arrays): counted as
    unreadable, never unpickled."""
    marker = str(tmp_path / 'marker')
    d = resume.state_dir(str(tmp_path))
    os.makedirs(d)
    arr = np.empty(1, dtype=object)
    arr[0] = _WritesMarker(marker)
    with open(osp.join(d, 'x-rank0-batch000000.npz'), 'wb') as f:
        np.savez(f, structure=np.frombuffer(
            b'{"format":2,"tree":[{"t":"ndarray","i":0}]}', dtype=np.uint8), a0=arr)
    with open(osp.join(d, 'x-rank0-batch000001.npz'), 'wb') as f:
        f.write(b'PK\x03\x04 cut short')
    done, bad = resume.read_state(str(tmp_path))
    assert (done, bad) == ({}, 2)
    assert not osp.exists(marker)
