"""The speed work changes no result: with the same seeds, the optimised DAG
loop and adapters give the adversarial images, labels and statistics of the
loop as it was before (``reference_dag.py``, kept verbatim) on the adapters'
former logits path."""
import math

import pytest
import torch
import torch.nn.functional as F

from mmdag.attacks import DAG
from mmdag.targets import SegmentationTargets
from mmdag.targets.segmentation import SCORE_FLOOR, mask_classification
from reference_dag import ReferenceDAG
from test_dag import LinearPixels, make_problem

# float tolerance on the 0..255 scale; on the CPU the images are in fact bitwise equal
ATOL = 1e-4


def assert_same(new, ref):
    assert len(new.adv_images) == len(ref.adv_images)
    for a, b in zip(new.adv_images, ref.adv_images):
        torch.testing.assert_close(a, b, atol=ATOL, rtol=0)
    for a, b in zip(new.adv_labels, ref.adv_labels):
        assert torch.equal(a, b)
    for s, t in zip(new.stats, ref.stats):
        # the statistics added since (trace, forward and backward counts) aside
        assert s.keys() >= t.keys()
        for k in t:
            if isinstance(s[k], float):
                both_nan = math.isnan(s[k]) and math.isnan(t[k])
                assert both_nan or s[k] == pytest.approx(t[k], abs=1e-5), k
            else:
                assert s[k] == t[k], k


@pytest.mark.parametrize('kwargs', [
    dict(max_iters=15),
    dict(max_iters=60, gamma=10.0),                     # runs until images converge
    dict(max_iters=25, stop_fraction=0.3, adv_labels='least_likely'),
    dict(max_iters=10, epsilon=1.0, adv_labels='permute', quantize=True),
    dict(max_iters=0),
])
def test_linear_pixels_same_as_reference(kwargs):
    w, b, imgs, labels = make_problem(num_images=3, size=7, num_classes=5, seed=4)
    # one image with a target wrong on the clean image, one with none correct
    labels[1] = labels[1].clone()
    labels[1][:5] = (labels[1][:5] + 1) % 5
    labels[2] = (labels[2] + 1) % 5
    seeds = [11, 12, 13]
    new = DAG(seed=5, **kwargs)(imgs, LinearPixels(w, b, labels), seeds=seeds)
    ref = ReferenceDAG(seed=5, **kwargs)(imgs, LinearPixels(w, b, labels), seeds=seeds)
    assert_same(new, ref)
    if kwargs['max_iters'] == 60:
        assert any(s['status'] == 'converged' for s in new.stats), 'the case needs an early stop'


class FormerSegmentationTargets(SegmentationTargets):
    """The segmentation adapter's logits as computed before the speed work:
    per-image slices of the batch's logits, an interpolation even to the same
    size, and advanced indexing of the target pixels."""

    def logits(self, images, indices):
        model = self.model
        samples = [self.samples[i] for i in indices]
        data = model.data_preprocessor(dict(inputs=list(images), data_samples=samples), False)
        metas = [s.metainfo for s in data['data_samples']]
        seg = model.inference(data['inputs'], metas)
        _, _, h, w = seg.shape
        out = []
        for k, (meta, i) in enumerate(zip(metas, indices)):
            left, right, top, bottom = meta.get('img_padding_size',
                                                meta.get('padding_size', [0] * 4))
            z = seg[k:k + 1, :, top:h - bottom, left:w - right]
            if meta.get('flip', False):
                z = z.flip(dims=(3, ) if meta.get('flip_direction') == 'horizontal' else (2, ))
            z = F.interpolate(z, size=tuple(meta['ori_shape']), mode='bilinear',
                              align_corners=model.align_corners)
            if mask_classification(model):
                z = z.clamp_min(SCORE_FLOOR).log()
            out.append(z[0].flatten(1).T[self.index[i]])
        return out


def seg_batch(flip_resize):
    """``flip_resize``: None; 'one' (the first image shown to the network
    flipped and at another size than the original, the metric's frame, as a
    flip / Resize pipeline does: images of several geometries, mapped back one
    by one); 'all' (every image so: mapped back as one batch)."""
    from mmengine.structures import PixelData

    from test_segmentation import make_batch
    batch = make_batch(num=3, h=40, w=56, seed=2, ignore_frac=0.2)
    for s in batch['data_samples'][:{None: 0, 'one': 1, 'all': 3}[flip_resize]]:
        s.set_metainfo(dict(ori_shape=(30, 42), flip=True, flip_direction='horizontal'))
        s.gt_sem_seg = PixelData(data=s.gt_sem_seg.data[:, :30, :42].clone())
    return batch


@pytest.mark.parametrize('use_gt,flip_resize', [(True, None), (False, None), (True, 'one'),
                                                (False, 'all')])
def test_segmentation_same_as_reference(use_gt, flip_resize):
    from mmdag.engine.step import attack_mode, image_seeds
    from test_segmentation import TINY, build
    model = build(TINY)
    batch = seg_batch(flip_resize)
    images = [x.float() for x in batch['inputs']]
    samples = batch['data_samples']
    seeds = image_seeds(samples)
    with attack_mode(model):
        new_t = SegmentationTargets(model, images, samples, use_gt=use_gt)
        old_t = FormerSegmentationTargets(model, images, samples, use_gt=use_gt)
        # the logits themselves, on the clean images
        ids = list(range(len(images)))
        for a, b in zip(new_t.logits(images, ids), old_t.logits(images, ids)):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
        new = DAG(max_iters=8, seed=1)(images, new_t, seeds=seeds)
        ref = ReferenceDAG(max_iters=8, seed=1)(images, old_t, seeds=seeds)
    assert sum(s['iters'] for s in new.stats) > 0, 'the case needs steps'
    assert_same(new, ref)


def test_row_sparse_roi_align_gradient_is_bitwise_mmcv():
    from mmcv.ops import RoIAlign

    from mmdag.targets.two_stage import row_sparse_roi_align
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(2, 8, 24, 32, generator=g)
    xy = torch.rand(40, 2, generator=g) * torch.tensor([100.0, 70.0])
    wh = torch.rand(40, 2, generator=g) * 60 + 1
    rois = torch.cat([torch.randint(0, 2, (40, 1), generator=g).float(), xy, xy + wh], 1)
    layer = torch.nn.ModuleList([RoIAlign(7, spatial_scale=0.25, sampling_ratio=0)])
    grad_out = torch.randn(40, 8, 7, 7, generator=g)
    grad_out[::3] = 0          # RoIs without a gradient (targets no longer correct)
    # mmcv's stock layer
    x = feats.clone().requires_grad_(True)
    stock_out = layer[0](x, rois)
    stock_grad = torch.autograd.grad(stock_out, x, grad_out)[0]
    # the row-sparse one: the same forward, the same gradient bit for bit
    x = feats.clone().requires_grad_(True)
    with row_sparse_roi_align(layer):
        sparse_out = layer[0](x, rois)
    assert 'forward' not in layer[0].__dict__   # the stock layer again
    sparse_grad = torch.autograd.grad(sparse_out, x, grad_out)[0]
    assert torch.equal(sparse_out, stock_out)
    assert torch.equal(sparse_grad, stock_grad)


def test_two_stage_same_as_reference():
    from mmdag.engine.step import attack_mode
    from mmdag.targets import TwoStageTargets
    from mmdag.targets.batching import map_canvas_groups
    from mmdag.targets.two_stage import _features, _roi_logits
    from test_two_stage import TARGETS, build, make_batch

    class FormerTwoStageTargets(TwoStageTargets):
        """The logits with mmcv's stock RoIAlign backward."""

        def logits(self, images, indices):
            def forward(group):
                ids = [indices[k] for k in group]
                x, metas = _features(self.model, [images[k] for k in group],
                                     [self.samples[i] for i in ids])
                return _roi_logits(self.model, x, [self.boxes[i] for i in ids], metas)
            return map_canvas_groups(self.model, images, forward)

    model = build('faster_fpn')
    batch = make_batch()
    images = [x.float() for x in batch['inputs']]
    results = []
    with attack_mode(model):
        for cls, attack in ((TwoStageTargets, DAG), (FormerTwoStageTargets, ReferenceDAG)):
            t = cls(model, images, batch['data_samples'], **TARGETS)
            with torch.no_grad():   # random weights: the clean prediction is the label
                t.labels = [z.argmax(1) for z in t.logits(images, [0, 1])]
            results.append(attack(max_iters=6, gamma=4.0, seed=2)(images, t, seeds=[3, 4]))
    new, ref = results
    # targets flipped along the way, so later backwards skipped RoIs
    assert any(0 < s['correct_frac'] < 1 for s in new.stats), new.stats
    assert_same(new, ref)
