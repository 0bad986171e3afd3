"""The speed work's code paths on CUDA: the row-sparse RoIAlign backward and
the benchmark (CUDA timing, peak memory, the CUDA goals).

Marked ``cuda`` and skipped where CUDA is absent; ``MMDAG_TEST_DEVICE=cpu``
runs them on the CPU.
"""
import os
import re

import pytest
import torch

from conftest import TINY, run_tool

DEVICE = os.environ.get('MMDAG_TEST_DEVICE', 'cuda')
pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(DEVICE == 'cuda' and not torch.cuda.is_available(),
                       reason='needs CUDA (MMDAG_TEST_DEVICE=cpu runs these on the CPU)'),
]


def test_row_sparse_roi_align_on_device_matches_mmcv():
    # on CUDA the layer keeps mmcv's own backward (the row-sparse one is for
    # the CPU); on the CPU (MMDAG_TEST_DEVICE=cpu) it is the row-sparse one
    from mmcv.ops import RoIAlign

    from mmdag.targets.two_stage import row_sparse_roi_align
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(2, 8, 24, 32, generator=g).to(DEVICE)
    xy = torch.rand(40, 2, generator=g) * torch.tensor([100.0, 70.0])
    wh = torch.rand(40, 2, generator=g) * 60 + 1
    rois = torch.cat([torch.randint(0, 2, (40, 1), generator=g).float(), xy, xy + wh], 1).to(DEVICE)
    layer = torch.nn.ModuleList([RoIAlign(7, spatial_scale=0.25, sampling_ratio=0)])
    grad_out = torch.randn(40, 8, 7, 7, generator=g)
    grad_out[::3] = 0          # RoIs without a gradient (targets no longer correct)
    grad_out = grad_out.to(DEVICE)
    outs, grads = [], []
    for sparse in (False, True):
        x = feats.clone().requires_grad_(True)
        if sparse:
            with row_sparse_roi_align(layer):
                out = layer[0](x, rois)
        else:
            out = layer[0](x, rois)
        outs.append(out)
        grads.append(torch.autograd.grad(out, x, grad_out)[0])
    assert outs[1].device.type == torch.device(DEVICE).type
    assert torch.equal(outs[0], outs[1])
    # CUDA's backward adds with atomics, in no fixed order: equal up to rounding
    torch.testing.assert_close(grads[1], grads[0], atol=1e-5, rtol=1e-5)
    assert grads[0].abs().sum() > 0


def test_benchmark_on_device(tiny_voc):
    res = run_tool(['tools/analysis/benchmark.py', '--config', TINY, '--data-root', tiny_voc,
                    '--num-images', '2', '--iters', '2', '--device', DEVICE,
                    '--methods', 'floor', 'mmdag', 'dag_class', 'plain'])
    rows = {m.group(1): m.groups()[1:] for m in re.finditer(
        r'^(\w+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+(\d+)\s+(\d+)$', res.stdout, re.M)}
    assert set(rows) == {'floor', 'mmdag', 'dag_class', 'plain'}, res.stdout
    assert all(int(r[3]) == 4 for r in rows.values()), res.stdout
    assert all(float(r[4]) > 0 for r in rows.values()), res.stdout   # peak memory
    assert f'device {DEVICE}' in res.stdout
    limit = '1.05' if DEVICE == 'cuda' else '1.15'
    assert f'(goal <= {limit})' in res.stdout, res.stdout
