"""An attack leaves the model as it found it: every parameter and buffer
(BatchNorm's running statistics too) bit for bit, each module's train/eval
mode, each parameter's requires_grad; for DAG, the budgeted attacks, a
worst case and TOG, on a segmentor and a two-stage detector. The model is
handed over in train mode, where a forward in that mode would move the
BatchNorm statistics."""
import pytest
import torch

from mmdag.apis import attack_batch
from test_segmentation import TINY
from test_segmentation import build as build_seg
from test_segmentation import make_batch as seg_batch
from test_two_stage import TARGETS
from test_two_stage import build as build_det
from test_two_stage import make_batch as det_batch

SEG_ATTACKS = [dict(max_iters=2), dict(type='PGD', max_iters=2), dict(type='APGD', max_iters=4),
               dict(type='WorstCase', attacks=['segpgd', 'cospgd'], max_iters=2)]
DET_ATTACKS = [dict(max_iters=2), dict(type='TOGVanishing', max_iters=2),
               dict(type='TOGMislabel', max_iters=2), dict(type='TOGUntargeted', max_iters=2),
               dict(type='TOGFabrication', max_iters=2),
               dict(type='DetPGD', max_iters=2), dict(type='DetPGD', max_iters=2, terms='cls')]


def snapshot(model):
    return ({k: v.detach().clone() for k, v in model.state_dict().items()},
            {n: m.training for n, m in model.named_modules()},
            {n: p.requires_grad for n, p in model.named_parameters()})


def check_unchanged(model, before):
    state, modes, flags = snapshot(model)
    assert state.keys() == before[0].keys()
    changed = [k for k in state if not torch.equal(state[k], before[0][k])]
    assert not changed, changed[:5]
    assert modes == before[1] and flags == before[2]


def has_batchnorm_statistics(model):
    return any(k.endswith('running_mean') for k in model.state_dict())


@pytest.mark.parametrize('attack', SEG_ATTACKS, ids=lambda a: a.get('type', 'DAG'))
def test_a_segmentor_is_left_as_it_was(attack):
    model = build_seg(TINY).train()
    assert has_batchnorm_statistics(model)
    # a parameter frozen by its owner stays frozen, the others trainable
    frozen = next(iter(model.parameters()))
    frozen.requires_grad_(False)
    before = snapshot(model)
    attack_batch(model, seg_batch(num=2), attack)
    check_unchanged(model, before)


@pytest.mark.parametrize('attack', DET_ATTACKS, ids=lambda a: a.get('type', 'DAG'))
def test_a_detector_is_left_as_it_was(attack):
    model = build_det('faster_fpn').train()
    assert has_batchnorm_statistics(model)
    before = snapshot(model)
    attack_batch(model, det_batch(num=2), attack, TARGETS)
    check_unchanged(model, before)
