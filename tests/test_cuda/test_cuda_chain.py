"""The whole chain on CUDA: API, adapters, PERM, transfer, tools/test.py, NCCL.

Marked ``cuda`` and skipped where CUDA is absent (``tools/gpu_check.sh``
prepares a bare GPU machine and runs them). ``MMDAG_TEST_DEVICE=cpu`` runs the
same checks on the CPU, to dry-run them on a machine without a GPU.
"""
import json
import os
import os.path as osp
import random
import sys

import numpy as np
import pytest
import torch

from conftest import ROOT, TINY, data_root_opts, run_tool

DEVICE = os.environ.get('MMDAG_TEST_DEVICE', 'cuda')
pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(DEVICE == 'cuda' and not torch.cuda.is_available(),
                       reason='needs CUDA (MMDAG_TEST_DEVICE=cpu runs these on the CPU)'),
]
DET = osp.join(ROOT, 'configs', 'demo', 'faster-rcnn_tiny_synthetic-voc.py')
TINY_DAG = osp.join(ROOT, 'configs', 'demo', 'fcn_tiny_synthetic-voc_dag.py')


def report(work_dir):
    with open(osp.join(work_dir, 'attack_report.json')) as f:
        return json.load(f)


def on_device(t):
    return t.device.type == torch.device(DEVICE).type


def cosine(a, b):
    a, b = a.flatten().double().cpu(), b.flatten().double().cpu()
    return float((a @ b) / (a.norm() * b.norm()))


# ----------------------------------------------------------------- Python API
@pytest.mark.parametrize('mode', ['whole', 'slide'])
def test_segmentation_attack_on_device_matches_cpu(mode):
    from mmdag.apis import attack_batch
    from mmdag.engine.step import perm_images
    from test_segmentation import TINY as TINY_CFG
    from test_segmentation import build, make_batch
    extra = dict(mode='slide', crop_size=(32, 32), stride=(24, 24)) if mode == 'slide' else {}
    model = build(TINY_CFG, **extra)
    batch = make_batch(num=2)
    attack = dict(max_iters=1, gamma=0.5)
    cpu, _ = attack_batch(model, batch, attack)
    model.to(DEVICE)
    dev, targets = attack_batch(model, batch, attack)
    assert all(on_device(x) for x in dev.adv_images + dev.perturbations + targets.labels)
    for a, b in zip(cpu.perturbations, dev.perturbations):
        assert b.abs().max().item() == pytest.approx(0.5, abs=1e-3)
        assert cosine(a, b) > 0.99          # the same first step, up to float rounding
    # PERM: loader images (CPU uint8) plus device perturbations
    perm = perm_images(batch['inputs'], dev.perturbations, batch['data_samples'])
    assert all(on_device(x) for x in perm)
    for x, q, r in zip(batch['inputs'], perm, dev.perturbations):
        assert (q - x.to(q).float()).abs().max().item() <= r.abs().max().item() + 1e-4


@pytest.mark.parametrize('name', ['faster_fpn', 'retinanet', 'fcos'])
def test_detectors_on_device_with_mixed_sizes(name):
    from mmdag.apis import attack_batch
    from mmdag.engine.step import attack_mode
    from mmdag.targets import build_targets
    from test_batching import MODELS, SHAPES, TARGET_CFG, mixed_batch
    model = MODELS[name]().to(DEVICE)
    batch = mixed_batch(SHAPES)
    images = [x.to(DEVICE).float() for x in batch['inputs']]
    with attack_mode(model), torch.no_grad():
        t = build_targets(model, images, batch['data_samples'], **TARGET_CFG[name])
        together = t.logits(images, [0, 1])
        alone = t.logits([images[1]], [1])[0]
    assert all(on_device(z) for z in together)
    assert torch.allclose(alone, together[1], atol=1e-3, rtol=1e-3)
    res, _ = attack_batch(model, batch, dict(max_iters=2, gamma=1.0), TARGET_CFG[name])
    assert all(s['status'] for s in res.stats)
    assert all(on_device(x) for x in res.adv_images)


def test_transfer_batch_with_loaded_perturbations_on_device(tmp_path):
    from mmdag.apis import attack_batch
    from mmdag.engine.perturbations import load_perturbation, save_perturbation
    from mmdag.engine.step import transfer_batch
    from test_segmentation import TINY as TINY_CFG
    from test_segmentation import build, make_batch
    model = build(TINY_CFG).to(DEVICE)
    batch = make_batch(num=2)
    res, _ = attack_batch(model, batch, dict(max_iters=2, gamma=1.0, quantize=True))
    for k, (s, r) in enumerate(zip(batch['data_samples'], res.perturbations)):
        save_perturbation(str(tmp_path), s, r, k)
    loaded = [load_perturbation(str(tmp_path), s, tuple(x.shape), k)
              for k, (s, x) in enumerate(zip(batch['data_samples'], batch['inputs']))]
    out, _ = transfer_batch(model, batch, loaded)
    for a, b in zip(res.adv_images, out.adv_images):
        assert on_device(b) and torch.equal(a, b)   # integer perturbations: stored exactly
    for s1, s2 in zip(res.stats, out.stats):
        assert s2['correct_frac'] == pytest.approx(s1['correct_frac'], abs=1e-6)


# ------------------------------------------------------------- tools/test.py
def test_tools_test_segmentation_chain_on_device(tiny_voc, trained_seg_checkpoint, tmp_path):
    """Attack (figures, saved perturbations), then transfer, then fp16 predictions."""
    src, dst, half = (str(tmp_path / n) for n in ('src', 'dst', 'fp16'))
    run_tool(['tools/test.py', TINY, trained_seg_checkpoint, '--attack', 'dag', '--attack-options',
              'max_iters=10', 'gamma=1.0', 'quantize=True', '--save-perturbations',
              '--num-figures', '2', '--work-dir', src, '--cfg-options', *data_root_opts(tiny_voc),
              'test_dataloader.batch_size=3'])
    a = report(src)
    assert a['environment']['device'].startswith(DEVICE)
    assert a['variants']['advr']['mIoU'] < a['variants']['orig']['mIoU']
    assert a['attack']['images'] == 6
    assert len(os.listdir(osp.join(src, 'figures'))) == 2
    pdir = osp.join(src, 'perturbations')
    assert len(os.listdir(pdir)) == 6
    # the same batches as the attack run: the same forwards, so the same ADVR
    run_tool(['tools/test.py', TINY, trained_seg_checkpoint, '--perturbations', pdir,
              '--work-dir', dst, '--cfg-options', *data_root_opts(tiny_voc),
              'test_dataloader.batch_size=3'])
    b = report(dst)
    assert b['variants']['advr']['mIoU'] == pytest.approx(a['variants']['advr']['mIoU'], abs=1e-6)
    run_tool(['tools/test.py', TINY_DAG, trained_seg_checkpoint, '--attack-options', 'max_iters=3',
              '--work-dir', half, '--cfg-options', *data_root_opts(tiny_voc), 'test_cfg.fp16=True'])
    c = report(half)
    assert c['settings']['test_fp16'] is True and c['environment']['device'].startswith(DEVICE)
    assert abs(c['variants']['orig']['mIoU'] - a['variants']['orig']['mIoU']) < 1.0


@pytest.mark.parametrize('model', ['faster_rcnn', 'retinanet'])
def test_tools_test_detection_on_device(model, tiny_voc, tmp_path):
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')
    torch.manual_seed(0)
    cfg = Config.fromfile(DET)
    opts = [f'test_dataloader.dataset.data_root={osp.dirname(tiny_voc)}/',
            'test_dataloader.batch_size=2']
    if model == 'retinanet':
        from conftest import zoo_config
        zoo = zoo_config('mmdet::retinanet/retinanet_r18_fpn_1x_coco.py').model
        zoo.backbone.pop('init_cfg', None)
        zoo.bbox_head.num_classes = 20
        zoo.data_preprocessor = cfg.model.data_preprocessor
        cfg.model = zoo
        opts += ['custom_hooks.0.targets.score_thr=1e-6']
    else:
        opts += ['custom_hooks.0.targets.score_thr=0.0']
    ckpt = str(tmp_path / 'random_det.pth')
    torch.save({'state_dict': MODELS.build(cfg.model).state_dict()}, ckpt)
    cfg_path = str(tmp_path / 'det.py')
    cfg.dump(cfg_path)
    wd = str(tmp_path / 'wd')
    run_tool(['tools/test.py', cfg_path, ckpt, '--attack', 'dag', '--attack-options', 'max_iters=2',
              '--num-figures', '2', '--save-perturbations', '--work-dir', wd,
              '--cfg-options', *opts])
    rep = report(wd)
    assert rep['environment']['device'].startswith(DEVICE)
    assert set(rep['variants']) == {'orig', 'advr', 'perm', 'advr_uint8'}
    assert rep['attack']['images'] == 6
    assert len(os.listdir(osp.join(wd, 'perturbations'))) == 6


# ------------------------------------------------------------ distributed
def test_dist_test_sh_matches_one_process(tiny_voc, trained_seg_checkpoint, tmp_path):
    """tools/dist_test.sh (NCCL on CUDA, one process per GPU, 2 at most) gives
    the numbers of a plain run."""
    nproc = min(2, torch.cuda.device_count()) if DEVICE == 'cuda' else 2
    opts = ['--attack', 'dag', '--attack-options', 'max_iters=4', 'gamma=1.0',
            '--cfg-options', *data_root_opts(tiny_voc), 'test_dataloader.dataset.indices=5',
            'test_dataloader.batch_size=1']
    one, many = str(tmp_path / 'one'), str(tmp_path / 'many')
    run_tool(['tools/test.py', TINY, trained_seg_checkpoint, '--work-dir', one, *opts])
    run_tool(['-c', 'import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))',
              'bash', 'tools/dist_test.sh', TINY, trained_seg_checkpoint, str(nproc),
              '--work-dir', many, *opts],
             env={'PYTHON': sys.executable, 'PORT': str(random.randint(40001, 60000))})
    r1, rn = report(one), report(many)
    assert rn['environment']['world_size'] == nproc
    assert rn['environment']['device'].startswith(DEVICE)
    assert r1['attack']['images'] == rn['attack']['images'] == 5
    # CUDA's backward kernels that accumulate with atomics (bilinear upsampling)
    # are not bitwise reproducible, so two CUDA runs' perturbations differ in
    # the last bits and a few PERM pixels may flip: seen on an H200, PERM mIoU
    # 68.84 vs 68.85 (5 images). On the CPU the runs are identical.
    tol = 1e-4 if DEVICE == 'cpu' else 0.1
    for v in r1['variants']:
        for k, x in r1['variants'][v].items():
            assert rn['variants'][v][k] == pytest.approx(x, abs=tol), \
                (v, k, r1['variants'], rn['variants'])
    assert np.isfinite(rn['attack']['linf'])


@pytest.mark.parametrize('name,attack', [('faster_fpn', 'DetPGD'), ('retinanet', 'DetPGD'),
                                         ('retinanet', 'TOGVanishing')])
def test_detection_attacks_on_device(name, attack):
    """DetPGD (the detector's loss, its samplers seeded per image and step on
    the device's generator too) and TOG on the device: on the device,
    inside the budget, the model unchanged, and the same result twice (up to
    the few pixels where CUDA's atomic adds flip a near-zero gradient's sign)."""
    from mmdag.apis import attack_batch
    from test_batching import MODELS, SHAPES, TARGET_CFG, mixed_batch
    model = MODELS[name]().to(DEVICE)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    batch = mixed_batch(SHAPES, seed=1)
    cfg = dict(type=attack, max_iters=2, epsilon=8)
    res, _ = attack_batch(model, batch, cfg, TARGET_CFG[name])
    again, _ = attack_batch(model, batch, cfg, TARGET_CFG[name])
    assert all(on_device(x) for x in res.adv_images)
    for x, a, b in zip(batch['inputs'], res.adv_images, again.adv_images):
        assert (a - x.to(a).float()).abs().max().item() <= 8 + 1e-3
        assert (a != b).float().mean().item() < 1e-3
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
