"""The per-head target code of mmdag.targets.dense_heads on CUDA.

Marked ``cuda`` (``MMDAG_TEST_DEVICE=cpu`` runs it on the CPU): for a few
heads whose targets read the clean predictions or build their own tensors
(RTMDet, TOOD, YOLOX, CenterNet, SOLOv2, AutoAssign; SOLO and DecoupledSOLO,
whose category branch the adapter runs itself for raw logits), the targets built on the
device equal those built on the CPU, and two DAG iterations run there.
"""
import os

import pytest
import torch

from mmdag.apis import attack_batch
from mmdag.engine.step import attack_mode
from mmdag.targets import build_targets
from test_dense_heads import CONFIGS, build, one_box_batch

DEVICE = os.environ.get('MMDAG_TEST_DEVICE', 'cuda')
pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(DEVICE == 'cuda' and not torch.cuda.is_available(),
                       reason='needs CUDA (MMDAG_TEST_DEVICE=cpu runs these on the CPU)'),
]
HEADS = ['RTMDetSepBNHead', 'TOODHead', 'YOLOXHead', 'CenterNetHead', 'SOLOV2Head',
         'AutoAssignHead', 'SOLOHead', 'DecoupledSOLOHead']


@pytest.mark.parametrize('head', HEADS)
def test_dense_head_targets_on_device(head):
    model = build(CONFIGS[head])
    batch = one_box_batch()
    image = batch['inputs'][0].float()
    with attack_mode(model):
        cpu = build_targets(model, [image], batch['data_samples'], score_thr=1e-6)
    model = model.to(DEVICE)
    with attack_mode(model):
        dev = build_targets(model, [image.to(DEVICE)], batch['data_samples'], score_thr=1e-6)
    assert dev.index[0].device.type == torch.device(DEVICE).type
    assert torch.equal(dev.index[0].cpu(), cpu.index[0])
    assert torch.equal(dev.labels[0].cpu(), cpu.labels[0])
    result, _ = attack_batch(model, batch, attack=dict(max_iters=2),
                             targets_cfg=dict(score_thr=1e-6))
    assert result.adv_images[0].device.type == torch.device(DEVICE).type
    assert result.stats[0]['iters'] >= 1 or result.stats[0]['status'] == 'converged'
