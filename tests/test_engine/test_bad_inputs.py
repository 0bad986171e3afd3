"""Every bad input to tools/test.py gets one line naming the fix, exit code 2,
and nothing written. docs/bad_inputs.md lists each case and its line; the case
names here are its first column."""
import importlib
import json
import os.path as osp
import pickle

import pytest
import torch

from conftest import ROOT, TINY, data_root_opts, run_tool

DET = osp.join(ROOT, 'configs', 'demo', 'faster-rcnn_tiny_synthetic-voc.py')


@pytest.fixture(scope='module')
def random_det_checkpoint(tmp_path_factory):
    """The demo Faster R-CNN with random weights, as a plain state dict."""
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(DET).model)
    path = osp.join(str(tmp_path_factory.mktemp('det')), 'random_det.pth')
    torch.save({'state_dict': model.state_dict()}, path)
    return path


class _Payload:
    """Unpickling it creates a file: stands in for code hidden in a checkpoint."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, 'w'))


def _code_checkpoint(src, dst, marker):
    ck = torch.load(src, weights_only=False)
    ck.setdefault('meta', {})['payload'] = _Payload(marker)
    torch.save(ck, dst)


def det_root_opts(tiny_voc):
    return [f'test_dataloader.dataset.data_root={osp.dirname(tiny_voc)}/']


def _zoo(rel):
    return osp.join(osp.dirname(importlib.import_module('mmdet').__file__), '.mim', 'configs', rel)


CASES = ['data_root', 'ann_file', 'zoo_dataset', 'detector_checkpoint', 'code_in_checkpoint',
         'out_not_pkl', 'perturbation_files', 'figures_dir', 'gamma', 'adv_labels',
         'target_class']


@pytest.mark.parametrize('case', CASES)
def test_bad_input_gets_one_clear_line(case, tiny_voc, random_seg_checkpoint, tmp_path,
                                       request):
    wd = tmp_path / 'wd'
    config, ck = TINY, random_seg_checkpoint
    opts = ['--attack', 'dag', '--attack-options', 'max_iters=1']
    cfg_opts = [*data_root_opts(tiny_voc), 'test_dataloader.dataset.indices=2']
    marker = tmp_path / 'payload_ran'
    if case == 'data_root':
        cfg_opts = [f'test_dataloader.dataset.data_root={tmp_path / "nowhere"}']
        expect = 'test data root'
    elif case == 'ann_file':
        cfg_opts = [*data_root_opts(tiny_voc), 'test_dataloader.dataset.ann_file=ImageSets/x.txt']
        expect = 'test annotation file'
    elif case == 'zoo_dataset':
        config = _zoo('detr/detr_r50_8xb2-150e_coco.py')
        cfg_opts = []
        expect = 'test data root data/coco/ not found'
    elif case == 'detector_checkpoint':
        ck = request.getfixturevalue('random_det_checkpoint')
        expect = 'does not fit the model'
    elif case == 'code_in_checkpoint':
        ck = str(tmp_path / 'code.pth')
        _code_checkpoint(random_seg_checkpoint, ck, str(marker))
        expect = 'holds objects other than weights'
    elif case == 'out_not_pkl':
        config, ck = DET, request.getfixturevalue('random_det_checkpoint')
        cfg_opts = [*det_root_opts(tiny_voc), 'test_dataloader.dataset.indices=2']
        opts += ['--out', str(tmp_path / 'results.txt')]
        expect = '.pkl'
    elif case == 'perturbation_files':
        pdir = tmp_path / 'perturbations'
        pdir.mkdir()
        (pdir / 'only_one.npz').write_bytes(b'')
        opts = ['--perturbations', str(pdir)]
        expect = '2 of the 2 test images have no saved perturbation'
    elif case == 'figures_dir':
        wd.mkdir()
        (wd / 'figures').write_text('a file where the figures directory goes')
        opts += ['--num-figures', '1']
        expect = 'cannot write to'
    elif case == 'gamma':
        opts = ['--attack', 'dag', '--attack-options', 'gamma=-1']
        expect = 'gamma must be > 0'
    elif case == 'adv_labels':
        opts = ['--attack', 'dag', '--attack-options', 'adv_labels=bogus']
        expect = 'adv_labels'
    else:
        opts = ['--attack', 'dag', '--attack-options', 'adv_labels=target', 'target_class=99']
        expect = 'target_class'
    res = run_tool(['tools/test.py', config, ck, *opts, '--work-dir', str(wd),
                    *(['--cfg-options', *cfg_opts] if cfg_opts else [])], check=False)
    assert res.returncode == 2, res.stdout[-1500:] + res.stderr[-3000:]
    err = [ln for ln in res.stderr.strip().splitlines() if ln.startswith('error: ')]
    assert len(err) == 1 and expect in err[0], res.stderr[-3000:]
    print(f'BAD-INPUT {case}: {err[0]}')  # docs/bad_inputs.md quotes these
    assert 'Traceback' not in res.stderr
    assert not osp.exists(wd / 'attack_report.json')
    assert not marker.exists()   # refused before any code in the file ran


def test_partial_checkpoint_runs_when_asked_and_the_report_says_so(
        tiny_voc, random_det_checkpoint, tmp_path):
    wd = str(tmp_path / 'wd')
    res = run_tool(['tools/test.py', TINY, random_det_checkpoint, '--allow-partial-checkpoint',
                    '--attack', 'dag', '--attack-options', 'max_iters=1', '--work-dir', wd,
                    '--cfg-options', *data_root_opts(tiny_voc),
                    'test_dataloader.dataset.indices=1'])
    assert 'does not fit the model' in res.stdout + res.stderr
    fit = json.load(open(osp.join(wd, 'attack_report.json')))['checkpoint_fit']
    assert fit['allow_partial'] and 'decode_head' in fit['missing_parts']
    assert 0.1 < fit['unloaded_fraction'] < 1 and fit['unloaded_params'] > 0


def test_a_fitting_checkpoint_reports_nothing_unloaded(tiny_voc, trained_seg_checkpoint,
                                                       tmp_path):
    # Runner-written (message hub, numpy scalars): loads weights-only
    wd = str(tmp_path / 'wd')
    res = run_tool(['tools/test.py', TINY, trained_seg_checkpoint, '--attack', 'dag',
                    '--attack-options', 'max_iters=1', '--work-dir', wd,
                    '--cfg-options', *data_root_opts(tiny_voc),
                    'test_dataloader.dataset.indices=1'])
    assert 'weights_only=False' not in res.stdout + res.stderr
    fit = json.load(open(osp.join(wd, 'attack_report.json')))['checkpoint_fit']
    assert fit['unloaded_params'] == 0 and fit['unloaded_buffers'] == 0
    assert fit['params'] > 0 and fit['missing_parts'] == []


def test_trusted_checkpoint_loads_fully_with_a_line(tiny_voc, random_seg_checkpoint, tmp_path):
    marker = tmp_path / 'payload_ran'
    ck = str(tmp_path / 'code.pth')
    _code_checkpoint(random_seg_checkpoint, ck, str(marker))
    res = run_tool(['tools/test.py', TINY, ck, '--trust-checkpoint', '--attack', 'none',
                    '--work-dir', str(tmp_path / 'wd'),
                    '--cfg-options', *data_root_opts(tiny_voc),
                    'test_dataloader.dataset.indices=1'])
    assert marker.exists()
    assert 'weights_only=False (--trust-checkpoint)' in res.stdout


def test_detection_out_dumps_a_pickle(tiny_voc, random_det_checkpoint, tmp_path):
    out = tmp_path / 'results.pkl'
    run_tool(['tools/test.py', DET, random_det_checkpoint, '--attack', 'dag',
              '--attack-options', 'max_iters=1', '--out', str(out), '--work-dir',
              str(tmp_path / 'wd'), '--cfg-options', *det_root_opts(tiny_voc),
              'test_dataloader.dataset.indices=2', 'custom_hooks.0.num_figures=0'])
    with open(out, 'rb') as f:
        results = pickle.load(f)
    assert len(results) == 2 and all('pred_instances' in r for r in results)


# 20 s on 2 cores (2026-12-07): with the slow checks, to keep the fast suite under 15 min
@pytest.mark.slow
def test_attack_none_with_a_list_of_evaluators(tiny_voc, random_seg_checkpoint, tmp_path):
    cfg = tmp_path / 'two_metrics.py'
    cfg.write_text(
        f"_base_ = ['{TINY}']\n"
        "test_evaluator = [dict(type='IoUMetric', iou_metrics=['mIoU']),\n"
        "                  dict(type='IoUMetric', iou_metrics=['mDice'], prefix='dice')]\n")
    common = ['--work-dir', str(tmp_path / 'wd'), '--cfg-options', *data_root_opts(tiny_voc),
              'test_dataloader.dataset.indices=1']
    clean = run_tool(['tools/test.py', str(cfg), random_seg_checkpoint, '--attack', 'none',
                      *common])
    assert 'dice/mDice' in clean.stdout + clean.stderr
    attacked = run_tool(['tools/test.py', str(cfg), random_seg_checkpoint, '--attack', 'dag',
                         '--attack-options', 'max_iters=1', *common])
    # each metric wrapped; the second keeps its prefix inside the variant's
    out = attacked.stdout + attacked.stderr
    assert 'advr/mIoU' in out and 'advr/dice/mDice' in out and 'orig/dice/mDice' in out
