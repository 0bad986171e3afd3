"""tools/test.py --attack dag on a detector: VOCMetric on orig / advr / perm."""
import json
import os
import os.path as osp

import torch

from conftest import ROOT, run_tool

DET = osp.join(ROOT, 'configs', 'demo', 'faster-rcnn_tiny_synthetic-voc.py')


def test_detector_report_and_figures(tiny_voc, tmp_path):
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')
    torch.manual_seed(0)
    ckpt = str(tmp_path / 'random_det.pth')
    torch.save({'state_dict': MODELS.build(Config.fromfile(DET).model).state_dict()}, ckpt)
    wd = str(tmp_path / 'wd')
    res = run_tool(['tools/test.py', DET, ckpt, '--attack', 'dag', '--attack-options', 'max_iters=2',
                    '--num-figures', '2', '--work-dir', wd, '--cfg-options',
                    f'test_dataloader.dataset.data_root={osp.dirname(tiny_voc)}/',
                    'custom_hooks.0.targets.score_thr=0.0'])
    rep = json.load(open(osp.join(wd, 'dag_report.json')))
    assert set(rep['variants']) == {'orig', 'advr', 'perm'}
    assert all('mAP' in v for v in rep['variants'].values())
    assert rep['attack']['images'] == 6
    assert 'mAP' in res.stdout
    assert len(os.listdir(osp.join(wd, 'figures'))) == 2
