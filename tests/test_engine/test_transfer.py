"""Saved perturbations and transfer mode (tools/test.py --save-perturbations / --perturbations)."""
import json
import os
import os.path as osp

import numpy as np
import pytest
import torch

from conftest import TINY, data_root_opts, run_tool


def report(work_dir):
    with open(osp.join(work_dir, 'attack_report.json')) as f:
        return json.load(f)


# 40 s on 2 cores (2026-12-07): with the slow checks, to keep the fast suite under 15 min
@pytest.mark.slow
def test_saved_perturbations_replay_the_attack(tiny_voc, trained_seg_checkpoint, tmp_path):
    src = str(tmp_path / 'src')
    # quantize=True: integer perturbations, stored exactly
    run_tool(['tools/test.py', TINY, trained_seg_checkpoint, '--attack', 'dag', '--attack-options',
              'max_iters=10', 'gamma=1.0', 'quantize=True', '--save-perturbations',
              '--work-dir', src, '--cfg-options', *data_root_opts(tiny_voc)])
    pdir = osp.join(src, 'perturbations')
    files = sorted(os.listdir(pdir))
    assert len(files) == 6 and all(f.endswith('.npz') for f in files)   # one per val image
    with np.load(osp.join(pdir, files[0])) as f:
        r = f['r']
        assert r.dtype == np.float16 and r.ndim == 3 and r.shape[0] == 3
        assert np.abs(r).max() > 0 and np.array_equal(r, np.round(r))
        assert str(f['img_path']).endswith('.jpg')
    # replaying them on the same model reproduces ADVR and the perturbation statistics
    dst = str(tmp_path / 'dst')
    run_tool(['tools/test.py', TINY, trained_seg_checkpoint, '--perturbations', pdir,
              '--work-dir', dst, '--cfg-options', *data_root_opts(tiny_voc)])
    a, b = report(src), report(dst)
    assert b['settings']['transfer_from'] == [pdir]
    assert b['attack']['iters'] == 0
    assert b['variants']['advr']['mIoU'] == pytest.approx(a['variants']['advr']['mIoU'], abs=1e-6)
    assert b['variants']['orig']['mIoU'] == pytest.approx(a['variants']['orig']['mIoU'], abs=1e-6)
    assert b['attack']['linf'] == pytest.approx(a['attack']['linf'], abs=1e-6)
    assert b['attack']['p'] == pytest.approx(a['attack']['p'], rel=1e-6)
    assert b['attack']['target_success'] == pytest.approx(a['attack']['target_success'], abs=1e-6)
    # two sources add up (r_A + r_B): here r + r, twice the L-inf unless clipped
    dbl = str(tmp_path / 'dbl')
    run_tool(['tools/test.py', TINY, trained_seg_checkpoint, '--perturbations', pdir, pdir,
              '--work-dir', dbl, '--cfg-options', *data_root_opts(tiny_voc)])
    c = report(dbl)
    assert c['settings']['transfer_from'] == [pdir, pdir]
    assert a['attack']['linf'] < c['attack']['linf'] <= 2 * a['attack']['linf'] + 1e-6


def test_missing_perturbation_directory_is_one_clear_line(tiny_voc, random_seg_checkpoint,
                                                          tmp_path):
    res = run_tool(['tools/test.py', TINY, random_seg_checkpoint, '--perturbations',
                    str(tmp_path / 'nowhere'), '--work-dir', str(tmp_path / 'wd'),
                    '--cfg-options', *data_root_opts(tiny_voc)], check=False)
    assert res.returncode == 2
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and 'nowhere' in err[0] and '--save-perturbations' in err[0]


def test_a_perturbation_records_its_frame_and_is_resized_only_when_asked(tmp_path):
    from mmengine.structures import BaseDataElement

    from mmdag.engine.perturbations import load_perturbation, save_perturbation
    from mmdag.errors import MMDagError
    s = BaseDataElement(metainfo=dict(img_path='/x/2008_000001.jpg', img_shape=(4, 6),
                                      ori_shape=(40, 60)))
    r = torch.arange(3 * 4 * 6, dtype=torch.float32).reshape(3, 4, 6)
    save_perturbation(str(tmp_path), s, r, frame=dict(channel_order='bgr', scale=(60, 40)))
    assert os.listdir(tmp_path) == ['2008_000001.npz']   # no temporary file left
    with np.load(tmp_path / '2008_000001.npz') as f:
        assert tuple(f['input_shape']) == (3, 4, 6) and tuple(f['ori_shape']) == (40, 60)
        assert str(f['channel_order']) == 'bgr' and str(f['scale']) == '(60, 40)'
        assert str(f['img_path']) == '/x/2008_000001.jpg'
    same = load_perturbation(str(tmp_path), s, (3, 4, 6))
    assert torch.equal(same, r)
    # another input frame: refused in one line naming the flag, unless asked
    with pytest.raises(MMDagError, match='--resize-perturbations') as e:
        load_perturbation(str(tmp_path), s, (3, 8, 12))
    assert '\n' not in str(e.value) and '(60, 40)' in str(e.value)
    big = load_perturbation(str(tmp_path), s, (3, 8, 12), resize=True)
    assert big.shape == (3, 8, 12) and big.mean().item() == pytest.approx(r.mean().item(), rel=1e-3)
    # the loader's other channel order: the same perturbation, channels reversed
    rgb = load_perturbation(str(tmp_path), s, (3, 4, 6), channel_order='rgb')
    assert torch.equal(rgb, r.flip(0))
    # the same name, another original size: another dataset's image, always refused
    other_size = BaseDataElement(metainfo=dict(img_path='/y/2008_000001.jpg', ori_shape=(41, 60)))
    with pytest.raises(MMDagError, match='another dataset'):
        load_perturbation(str(tmp_path), other_size, (3, 4, 6), resize=True)
    other = BaseDataElement(metainfo=dict(img_path='/x/2008_000002.jpg'))
    with pytest.raises(MMDagError, match='save_perturbations'):
        load_perturbation(str(tmp_path), other, (3, 4, 6))
    (tmp_path / '2008_000003.npz').write_bytes(b'half a file')
    with pytest.raises(MMDagError, match='cannot read saved perturbation'):
        load_perturbation(str(tmp_path), BaseDataElement(
            metainfo=dict(img_path='/x/2008_000003.jpg')), (3, 4, 6))
