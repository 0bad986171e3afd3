"""Decoder queries of DETR-like detectors as DAG targets (mmdag.targets.queries).

Zoo configs with random weights and 2 encoder / decoder layers (the rules do
not depend on depth), on small images. What is checked: the adapter's logits
of the clean image are the ones the stock prediction reads; targets follow
the documented rule; the fixed query selection is replayed (and differs from
re-running it); an image's targets and logits do not depend on its batch.
"""
import pytest
import torch
from mmdet.structures.bbox import bbox_overlaps

from mmdag.apis import attack_batch
from mmdag.benchmark import coverage as cov
from mmdag.targets import QueryTargets, find_adapter
from mmdag.targets.queries import _Selection

# each model is built and run several times (about 3 min on 2 cores): in CI, not by default
pytestmark = pytest.mark.slow
SIZE = (128, 160)
BOX = [[16., 12., 144., 116.]]   # large: random-weight query boxes overlap it
CONFIGS = {
    'detr': 'detr/detr_r18_8xb2-500e_coco.py',
    'conditional': 'conditional_detr/conditional-detr_r50_8xb2-50e_coco.py',
    'dab': 'dab_detr/dab-detr_r50_8xb2-50e_coco.py',
    'deformable': 'deformable_detr/deformable-detr_r50_16xb2-50e_coco.py',
    'deformable-2stage': 'deformable_detr/deformable-detr-refine-twostage_r50_16xb2-50e_coco.py',
    'dino': 'dino/dino-4scale_r50_8xb2-12e_coco.py',
    'ddq': 'ddq/ddq-detr-4scale_r50_8xb2-12e_coco.py',
}
_MODELS = {}


def build(name):
    if name not in _MODELS:
        cfg = cov.load_config('mmdet', CONFIGS[name])
        for part in ('encoder', 'decoder'):
            cfg.model[part]['num_layers'] = 2
        # two-stage selection takes its queries among the encoder's tokens,
        # about 450 at this size (DINO's default is 900)
        cfg.model['num_queries'] = min(cfg.model.get('num_queries', 100), 100)
        model = cov.build_model('mmdet', cfg)
        if hasattr(model, 'level_embed'):
            # Deformable DETR, DINO, DDQ create it as uninitialised memory
            # (only init_weights sets it): whatever an earlier test left there,
            # up to 1e35 or NaN, made these tests depend on their order
            with torch.no_grad():
                model.level_embed.copy_(torch.randn(
                    model.level_embed.shape, generator=torch.Generator().manual_seed(0)))
        if name == 'detr':
            # a random softmax head predicts no-object or any class: make every
            # query predict class 1 so that the argmax rule selects targets
            with torch.no_grad():
                model.bbox_head.fc_cls.bias[1] += 20.
        _MODELS[name] = model
    return _MODELS[name]


def batch(seeds=(0, ), size=SIZE):
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    inputs, samples = [], []
    for seed in seeds:
        g = torch.Generator().manual_seed(seed)
        inputs.append((torch.rand(3, *size, generator=g) * 255).round().to(torch.uint8))
        s = DetDataSample(metainfo=dict(img_shape=size, ori_shape=size, scale_factor=(1., 1.),
                                        img_path=f'{seed}.jpg', img_id=seed))
        s.gt_instances = InstanceData(bboxes=torch.tensor(BOX), labels=torch.tensor([1]))
        samples.append(s)
    return dict(inputs=inputs, data_samples=samples)


def stock_scores(model, data):
    """The last decoder layer's class scores the stock test_step predicts from."""
    seen = []
    head = model.bbox_head
    stock = head.predict_by_feat

    def spy(*args, **kwargs):
        seen.append(args[0])
        return stock(*args, **kwargs)

    head.predict_by_feat = spy
    try:
        with torch.no_grad():
            preds = model.test_step(data)
    finally:
        del head.predict_by_feat
    return seen[0][-1], preds


def targets_of(model, data, **kw):
    kw.setdefault('score_thr', 1e-6)   # random sigmoid scores start near 0.01
    kw.setdefault('iou_thr', 1e-3)     # random two-stage query boxes are a few pixels wide
    with torch.no_grad():
        return QueryTargets(model, [x.float() for x in data['inputs']], data['data_samples'], **kw)


@pytest.mark.parametrize('name', list(CONFIGS))
def test_clean_logits_are_what_the_stock_prediction_reads(name):
    model = build(name)
    assert find_adapter(model) is QueryTargets
    data = batch()
    scores, _ = stock_scores(model, data)
    t = targets_of(model, data)
    assert len(t.labels[0]) > 0 and (t.labels[0] == 1).all()
    with torch.no_grad():
        ours = t.logits([data['inputs'][0].float()], [0])[0]
    torch.testing.assert_close(ours, scores[0][t.index[0]], atol=1e-4, rtol=1e-4)
    assert t.correct(ours, t.labels[0]).all()   # every target detects its object on the clean image
    assert t.settings['sigmoid'] == (name != 'detr')


def test_softmax_detr_targets_are_the_predictions_on_the_box():
    model = build('detr')
    data = batch()
    _, preds = stock_scores(model, data)
    t = targets_of(model, data, iou_thr=0.1)
    p = preds[0].pred_instances   # 100 queries, 100 kept: one box per query
    assert len(p) == model.num_queries and (p.labels == 1).all()
    on_box = bbox_overlaps(p.bboxes, torch.tensor(BOX))[:, 0] >= 0.1
    assert 0 < len(t.index[0]) == int(on_box.sum())
    assert t.exclude_adv == (model.bbox_head.num_classes, )   # no-object never adversarial
    assert t.num_classes == model.bbox_head.num_classes + 1


def test_softmax_detr_no_object_winning_does_not_flip_a_query():
    """mmdet's DETRHead outputs every query with its best of the C classes
    (``softmax[..., :-1]``): a query whose no-object logit wins is still
    output with its true label, so it is still correct (it was counted as
    flipped before)."""
    model = build('detr')
    data = batch()
    with torch.no_grad():
        model.bbox_head.fc_cls.bias[-1] += 40.    # no-object wins on every query
    try:
        scores, preds = stock_scores(model, data)
        assert (scores[0].argmax(-1) == model.bbox_head.num_classes).all()
        p = preds[0].pred_instances
        assert (p.labels == 1).all()      # ... and the stock output is class 1 everywhere
        t = targets_of(model, data, iou_thr=0.1)
        on_box = bbox_overlaps(p.bboxes, torch.tensor(BOX))[:, 0] >= 0.1
        assert 0 < len(t.index[0]) == int(on_box.sum())
    finally:
        with torch.no_grad():
            model.bbox_head.fc_cls.bias[-1] -= 40.


@pytest.mark.parametrize('name', ['dino', 'deformable-2stage', 'ddq'])
def test_fixed_query_selection_is_replayed(name):
    model = build(name)
    data = batch()
    clean = data['inputs'][0].float()
    noisy = (clean + 60 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(1))
             ).clamp(0, 255)
    fixed = targets_of(model, data, query_selection='fixed')
    rerun = targets_of(model, data, query_selection='rerun')
    assert fixed.selection is not None and rerun.selection is None
    assert torch.equal(fixed.index[0], rerun.index[0])   # same targets on the clean image
    # the perturbation changes what the encoder selects ...
    probe = _Selection(model, fixed.selection.kind)
    probe.per_image = {}
    fixed_probe = QueryTargets.__new__(QueryTargets)
    fixed_probe.__dict__.update(fixed.__dict__, selection=probe)
    with torch.no_grad():
        fixed_probe._forward([noisy], [0], record=True)
    assert not torch.equal(probe.per_image[0], fixed.selection.per_image[0])
    # ... fixed replays the clean selection, rerun follows the perturbed one
    with torch.no_grad():
        a = fixed.logits([noisy], [0])[0]
        b = rerun.logits([noisy], [0])[0]
        c = fixed.logits([clean], [0])[0]
        d = rerun.logits([clean], [0])[0]
    torch.testing.assert_close(c, d)
    assert not torch.allclose(a, b, atol=1e-3)


@pytest.mark.parametrize('name', ['dino', 'ddq'])
def test_targets_and_logits_do_not_depend_on_the_batch(name):
    model = build(name)
    pair = batch(seeds=(0, 1))
    both = targets_of(model, pair)
    images = [x.float() for x in pair['inputs']]
    with torch.no_grad():
        together = both.logits(images, [0, 1])
    for k in (0, 1):
        one = targets_of(model, dict(inputs=[pair['inputs'][k]],
                                     data_samples=[pair['data_samples'][k]]))
        assert torch.equal(one.index[0], both.index[k])
        with torch.no_grad():
            alone = one.logits([images[k]], [0])[0]
        torch.testing.assert_close(alone, together[k], atol=1e-4, rtol=1e-4)


def test_attack_batch_runs_and_lowers_the_true_scores():
    model = build('dino')
    result, t = attack_batch(model, batch(), attack=dict(max_iters=3),
                             targets_cfg=dict(score_thr=1e-6))
    assert isinstance(t, QueryTargets) and result.stats[0]['iters'] == 3
    with torch.no_grad():
        before = t.logits([batch()['inputs'][0].float()], [0])[0]
        after = t.logits([result.adv_images[0].float()], [0])[0]
    true = t.labels[0][:, None]
    assert (after.gather(1, true) - before.gather(1, true)).mean() < 0


def test_query_selection_is_checked():
    with pytest.raises(ValueError, match='query_selection'):
        targets_of(build('dino'), batch(), query_selection='sometimes')


# mmdet MaskFormer / Mask2Former: queries classified over C classes + no-object
MASK_CONFIGS = {
    'maskformer': 'maskformer/maskformer_r50_ms-16xb1-75e_coco.py',
    'mask2former': 'mask2former/mask2former_r50_8xb2-lsj-50e_coco-panoptic.py',
    'mask2former-ins': 'mask2former/mask2former_r50_8xb2-lsj-50e_coco.py',
}


def build_mask(name):
    if name not in _MODELS:
        cfg = cov.load_config('mmdet', MASK_CONFIGS[name])
        head = cfg.model.panoptic_head
        head.pixel_decoder.encoder.num_layers = 1
        head.transformer_decoder.num_layers = 3 if 'mask2' in name else 2
        model = cov.build_model('mmdet', cfg)
        with torch.no_grad():   # every query predicts class 1 (see build)
            model.panoptic_head.cls_embed.bias[1] += 20.
        _MODELS[name] = model
    return _MODELS[name]


@pytest.mark.parametrize('name', list(MASK_CONFIGS))
def test_mask_queries_are_those_on_the_object(name):
    from mmdag.targets import MaskQueryTargets
    model = build_mask(name)
    assert find_adapter(model) is MaskQueryTargets
    data = batch()
    seen = []
    fusion = model.panoptic_fusion_head
    stock = fusion.predict

    def spy(cls, masks, *args, **kwargs):
        seen.append((cls, masks))
        return stock(cls, masks, *args, **kwargs)

    fusion.predict = spy
    try:
        with torch.no_grad():
            model.test_step(data)
    finally:
        del fusion.predict
    cls, masks = seen[0]
    with torch.no_grad():
        t = MaskQueryTargets(model, [data['inputs'][0].float()], data['data_samples'])
        ours = t.logits([data['inputs'][0].float()], [0])[0]
    num_classes = model.panoptic_head.num_classes
    assert t.num_classes == num_classes + 1 and t.exclude_adv == (num_classes, )
    torch.testing.assert_close(ours, cls[0][t.index[0]], atol=1e-4, rtol=1e-4)
    # the rule, from the stock masks: sigmoid > 0.5 on the image, IoU >= 0.1 with the box
    h, w = SIZE
    pred = masks[0][:, :h, :w].sigmoid() > 0.5
    box = torch.zeros(h, w, dtype=torch.bool)
    x1, y1, x2, y2 = [int(v) for v in BOX[0]]
    box[y1:y2, x1:x2] = True
    inter = (pred & box).flatten(1).sum(1).float()
    union = (pred | box).flatten(1).sum(1).float()
    on_box = (inter / union.clamp_min(1) >= 0.1) & (cls[0].argmax(1) == 1)
    assert 0 < len(t.index[0]) and torch.equal(t.index[0], torch.nonzero(on_box)[:, 0])
    result, _ = attack_batch(model, data, attack=dict(max_iters=2))
    assert result.stats[0]['iters'] == 2
