import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TINY = osp.join(ROOT, 'configs', 'demo', 'fcn_tiny_synthetic-voc.py')
sys.path.insert(0, ROOT)
# the zoo-model builders and batch makers of tests/test_targets (test_one_stage,
# test_two_stage, test_segmentation, test_batching) are shared by other folders
sys.path.insert(0, osp.join(ROOT, 'tests', 'test_targets'))

# `make test-numerics`: the same checks under another floating-point
# configuration (the Makefile also sets one thread and ATen's scalar
# kernels): torch's own convolutions instead of oneDNN's
if os.environ.get('MMDAG_TEST_NUMERICS') == 'alt':
    torch.backends.mkldnn.enabled = False
    torch.set_num_threads(1)


@pytest.fixture(scope='session')
def tiny_voc(tmp_path_factory):
    """A small synthetic VOC2012-format set: 32 train, 6 val images (160x120)."""
    root = tmp_path_factory.mktemp('voc')
    subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'make_synthetic_voc.py'), str(root),
                    '--num-train', '32', '--num-val', '6', '--seed', '3'], check=True,
                   stdout=subprocess.DEVNULL)
    return osp.join(str(root), 'VOCdevkit', 'VOC2012')


@pytest.fixture(scope='session')
def random_seg_checkpoint(tmp_path_factory):
    """The demo segmentor with random weights, saved as a plain state dict."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS
    init_default_scope('mmseg')
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(TINY).model)
    path = osp.join(str(tmp_path_factory.mktemp('ckpt')), 'random_seg.pth')
    torch.save({'state_dict': model.state_dict()}, path)
    return path


@pytest.fixture(scope='session')
def trained_seg_checkpoint(tiny_voc, tmp_path_factory):
    """The demo segmentor briefly trained (stock runner, tools/train.py) on tiny_voc.

    A random-weight segmentor predicts one class everywhere with a huge margin;
    a briefly trained one makes real, attackable predictions.
    """
    wd = str(tmp_path_factory.mktemp('train'))
    iters = 150
    run_tool(['tools/train.py', TINY, '--work-dir', wd, '--cfg-options',
              f'train_dataloader.dataset.data_root={tiny_voc}',
              f'val_dataloader.dataset.data_root={tiny_voc}',
              f'test_dataloader.dataset.data_root={tiny_voc}',
              f'train_cfg.max_iters={iters}', f'train_cfg.val_interval={iters + 1}',
              f'param_scheduler.0.end={iters}', f'default_hooks.checkpoint.interval={iters}'])
    return osp.join(wd, f'iter_{iters}.pth')


def data_root_opts(data_root):
    return [f'test_dataloader.dataset.data_root={data_root}']


def run_tool(args, env=None, check=True):
    """Run a tool as a user would, in a fresh process; returns CompletedProcess."""
    e = dict(os.environ, PYTHONWARNINGS='ignore', **(env or {}))
    res = subprocess.run([sys.executable, *args], cwd=ROOT, env=e, capture_output=True, text=True)
    if check and res.returncode != 0:
        raise AssertionError(f'{args} failed ({res.returncode}):\n'
                             f'{res.stdout[-3000:]}\n{res.stderr[-3000:]}')
    return res


def zoo_config(path):
    """Config of an installed OpenMMLab package: 'mmdet::faster_rcnn/x.py'."""
    import importlib

    from mmengine.config import Config
    pkg, rel = path.split('::')
    root = osp.dirname(importlib.import_module(pkg).__file__)
    return Config.fromfile(osp.join(root, '.mim', 'configs', rel))


def eq1_loss(targets, images, adv_labels):
    """Eq. (1) of the paper, sum over the attacked targets (adversarial label
    >= 0) of f_l - f_l', on ``images``."""
    with torch.no_grad():
        logits = targets.logits([x.float() for x in images], list(range(len(images))))
    total = 0.0
    for z, lab, a in zip(logits, targets.labels, adv_labels):
        k = a >= 0
        total += (z[k].gather(1, lab[k, None]) - z[k].gather(1, a[k, None])).sum().item()
    return total
