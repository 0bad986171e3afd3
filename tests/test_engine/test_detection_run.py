"""tools/test.py --attack dag on a detector: VOCMetric on orig / advr / perm."""
import json
import os
import os.path as osp

import pytest
import torch

from conftest import ROOT, run_tool

DET = osp.join(ROOT, 'configs', 'demo', 'faster-rcnn_tiny_synthetic-voc.py')


@pytest.mark.slow   # a detector run with its report and pictures: about 20 s on a CPU
def test_detector_report_and_figures(tiny_voc, tmp_path):
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')
    torch.manual_seed(0)
    ckpt = str(tmp_path / 'random_det.pth')
    torch.save({'state_dict': MODELS.build(Config.fromfile(DET).model).state_dict()}, ckpt)
    wd = str(tmp_path / 'wd')
    res = run_tool(['tools/test.py', DET, ckpt, '--attack', 'dag', '--attack-options',
                    'max_iters=2',
                    '--num-figures', '2', '--work-dir', wd, '--cfg-options',
                    f'test_dataloader.dataset.data_root={osp.dirname(tiny_voc)}/',
                    'custom_hooks.0.targets.score_thr=0.0'])
    rep = json.load(open(osp.join(wd, 'attack_report.json')))
    assert set(rep['variants']) == {'orig', 'advr', 'perm', 'advr_uint8'}
    assert all('mAP' in v for v in rep['variants'].values())
    assert rep['attack']['images'] == 6
    assert 'mAP' in res.stdout
    assert len(os.listdir(osp.join(wd, 'figures'))) == 2


@pytest.mark.slow   # a one-stage detector through tools/test.py: about 16 s on a CPU
def test_one_stage_detector_through_tools_test(tiny_voc, tmp_path):
    """A RetinaNet (random weights) on the demo data, attacked with --attack dag."""
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from conftest import zoo_config
    init_default_scope('mmdet')
    cfg = Config.fromfile(DET)
    model = zoo_config('mmdet::retinanet/retinanet_r18_fpn_1x_coco.py').model
    model.backbone.pop('init_cfg', None)
    model.bbox_head.num_classes = 20
    model.data_preprocessor = cfg.model.data_preprocessor
    cfg.model = model
    path = str(tmp_path / 'retinanet_tiny.py')
    cfg.dump(path)
    torch.manual_seed(0)
    ckpt = str(tmp_path / 'random_retina.pth')
    torch.save({'state_dict': MODELS.build(cfg.model).state_dict()}, ckpt)
    wd = str(tmp_path / 'wd')
    # random weights score every class ~0.01, under the head's 0.05: a
    # threshold of ~0 makes every matched anchor a still-correct target
    run_tool(['tools/test.py', path, ckpt, '--attack', 'dag', '--attack-options', 'max_iters=2',
              '--work-dir', wd, '--cfg-options',
              f'test_dataloader.dataset.data_root={osp.dirname(tiny_voc)}/',
              'custom_hooks.0.targets.score_thr=0.000001'])
    rep = json.load(open(osp.join(wd, 'attack_report.json')))
    assert rep['settings']['targets']['adapter'] == 'OneStageTargets'
    assert rep['settings']['targets']['head'] == 'RetinaHead'
    assert all('mAP' in v for v in rep['variants'].values())
    assert rep['attack']['images'] == 6 and rep['attack']['iters'] == 2


@pytest.mark.slow   # TOG vanishing through tools/test.py: about 25 s on a CPU
def test_tog_vanishing_through_tools_test(tiny_voc, random_seg_checkpoint, tmp_path):
    """--attack togvanishing on the demo Faster R-CNN (random weights): the
    report names it, every record stays inside the budget; on a segmentor
    it is refused in one line."""
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from mmdag.engine.records import read_records
    from conftest import TINY
    init_default_scope('mmdet')
    torch.manual_seed(0)
    ckpt = str(tmp_path / 'random_det.pth')
    torch.save({'state_dict': MODELS.build(Config.fromfile(DET).model).state_dict()}, ckpt)
    wd = str(tmp_path / 'wd')
    run_tool(['tools/test.py', DET, ckpt, '--attack', 'togvanishing', '--attack-options',
              'max_iters=2', 'epsilon=4', '--work-dir', wd, '--cfg-options',
              f'test_dataloader.dataset.data_root={osp.dirname(tiny_voc)}/',
              'test_dataloader.dataset.indices=2', 'custom_hooks.0.targets.score_thr=0.0'])
    rep = json.load(open(osp.join(wd, 'attack_report.json')))
    assert rep['settings']['attack']['type'] == 'TOGVanishing'
    assert rep['settings']['attack']['alpha'] == 2.0
    records = read_records(osp.join(wd, 'attack_records.jsonl'))[0]
    assert len(records) == 2 and all(r['linf'] <= 4.0 + 1e-3 for r in records)
    res = run_tool(['tools/test.py', TINY, random_seg_checkpoint, '--attack', 'togvanishing',
                    '--work-dir', str(tmp_path / 'seg'), '--cfg-options',
                    f'test_dataloader.dataset.data_root={tiny_voc}',
                    'test_dataloader.dataset.indices=1'], check=False)
    assert res.returncode != 0 and 'TOG vanishing needs a detector' in res.stderr
    assert 'Traceback' not in res.stderr, res.stderr[-2000:]


@pytest.mark.slow   # a worst case of two attacks at two budgets: about 40 s on a CPU
def test_a_detection_worst_case_sweep_through_tools_test(tiny_voc, tmp_path):
    """Three detection attacks, their worst case and a sweep in one command
    on the demo Faster R-CNN (random weights): each variant's error breakdown
    adds up to the objects, the worst case's mAP is at or below each
    member's at every epsilon, and the report draws the breakdown."""
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')
    torch.manual_seed(0)
    ckpt = str(tmp_path / 'random_det.pth')
    torch.save({'state_dict': MODELS.build(Config.fromfile(DET).model).state_dict()}, ckpt)
    wd = str(tmp_path / 'wd')
    res = run_tool(['tools/test.py', DET, ckpt, '--attack', 'worstcase', '--attack-options',
                    'attacks=detpgd,togvanishing,toguntargeted', 'max_iters=1', '--epsilons', '2',
                    '4', '--work-dir', wd, '--cfg-options',
                    f'test_dataloader.dataset.data_root={osp.dirname(tiny_voc)}/',
                    'test_dataloader.dataset.indices=3', 'custom_hooks.0.targets.score_thr=0.0',
                    'test_evaluator.score_thr=0.0'])
    rep = json.load(open(osp.join(wd, 'attack_report.json')))
    m = rep['metrics']
    members = ('DetPGD', 'TOGVanishing', 'TOGUntargeted')
    errors = rep['errors']
    assert errors['score_thr'] == 0.0 and errors['gt'] > 0
    for level in ('', '@2'):
        for v in ('advr_winner', 'advr_worst', *(f'advr[{n}]' for n in members)):
            assert errors['variants'][v + level]['adds_up'], v + level
        # no breakdown is labelled advr unless it is the headline's
        assert 'advr' + level not in errors['variants']
        worst = m[f'advr_worst{level}/mAP']
        assert all(worst <= m[f'advr[{n}]{level}/mAP'] for n in members)
        assert sum(m[f'advr_worst{level}/images_{n}'] for n in members) == 3
        # the headline is the worst case, at or below each member; the
        # attack's own per-image winners are a secondary key
        assert all(m[f'advr{level}/mAP'] <= m[f'advr[{n}]{level}/mAP'] for n in members)
        assert m[f'advr{level}/mAP'] <= worst and f'advr_winner{level}/mAP' in m
    assert errors['variants']['orig']['adds_up'] and 'by_size' in errors['variants']['advr_winner']
    assert errors['picture'] == 'attack_errors.png'
    assert osp.isfile(osp.join(wd, 'attack_errors.png'))
    assert 'lowest mAP' in rep['sweep']['table'] and 'lowest mAP' in res.stdout
    # TIDE's breakdown of the clean images, the loop's images (the attack's
    # per-image winners, beside the headline as advr_winner) and each member,
    # with its picture and its table in the log
    tide = rep['tide']
    assert set(tide['variants']) == {'orig', 'advr_winner', *(f'advr[{n}]' for n in members)}
    for row in tide['variants'].values():
        assert 0 <= row['AP'] <= 100 and all(row[f'dAP/{e}'] >= 0 for e in
                                             ('cls', 'loc', 'both', 'dupe', 'bkg', 'miss'))
        assert row['count/gt'] == errors['gt']
    assert tide['picture'] == 'tide_errors.png' and osp.isfile(osp.join(wd, 'tide_errors.png'))
    assert "TIDE's errors" in res.stdout + res.stderr
    assert rep['variants']['advr']['mAP'] == m['advr/mAP']
    assert rep['headline']['advr/mAP']['selection'] in ('advr_worst',
                                                        *(f'advr[{n}]' for n in members))
    assert f"{100 * m['advr/mAP']:7.2f}" in res.stdout
    assert 'worst case: advr/mAP from' in res.stdout + res.stderr
    # each image's record: what each variant broke on it, adding up to its objects
    from mmdag.engine.records import read_records
    from mmdag.evaluation.det_errors import OBJECT_KINDS
    records = read_records(osp.join(wd, 'attack_records.jsonl'))[0]
    assert len(records) == 3
    for r in records:
        e = r['errors']
        assert set(e) == {'gt', 'orig', 'advr', *(f'advr[{n}]' for n in members)}
        assert all(sum(e[v][k] for k in OBJECT_KINDS) == e['gt'] for v in e if v != 'gt')
    assert sum(r['errors']['gt'] for r in records) == errors['gt']
    for v, total in (('orig', 'orig'), ('advr', 'advr_winner'), ('advr[DetPGD]', 'advr[DetPGD]')):
        assert sum(r['errors'][v]['missed'] for r in records) == errors['variants'][total]['missed']
    # resumed from its saved state, every image done: the same metrics, the
    # worst case and the breakdown included
    again = run_tool(['tools/test.py', DET, ckpt, '--attack', 'worstcase', '--attack-options',
                      'attacks=detpgd,togvanishing,toguntargeted', 'max_iters=1', '--epsilons',
                      '2', '4', '--work-dir', wd, '--resume', '--cfg-options',
                      f'test_dataloader.dataset.data_root={osp.dirname(tiny_voc)}/',
                      'test_dataloader.dataset.indices=3',
                      'custom_hooks.0.targets.score_thr=0.0', 'test_evaluator.score_thr=0.0'])
    assert 'resuming: 3 of 3 images done' in again.stdout + again.stderr
    after = json.load(open(osp.join(wd, 'attack_report.json')))
    assert after['metrics'] == m and after['errors'] == errors
