"""TOG vanishing and fabrication against the authors' losses (the oracle in
``reference_tog.py``, transcribed from github git-disl/TOG), on mmdet zoo
configs with random weights, in float64.

For each kind of detector the reference reads the scores that the stock
``test_step`` hands its ``predict_by_feat`` (a spy; no mmdag code runs),
brings them to the layout of the authors' model (``frcnn.py``: RPN scores
``[background, object]``, RoI scores background first; ``yolov3.py``:
channels-last maps; ``ssd.py``: ``[B, N, C + 1]`` background first) and
computes TOG's loss. mmdag's :meth:`candidate_loss` must give the same value
and the same gradient with respect to the image. Where TOG has no model of
the kind, the reference applies the rule mmdag documents
(:mod:`mmdag.targets.candidates`): YOLOv3's objectness rule on every class
logit of a sigmoid head (RetinaNet, DINO), SSD's rule towards no-object for
a softmax query head (DETR).

Each case also tries mutations of the loss that a wrong implementation would
compute (the RPN term dropped, only the matched candidates, the class
logits of YOLOv3 instead of its objectness, the other direction): each must
differ from mmdag's, in value or gradient, by far more than the tolerance,
so the comparison catches it.
"""
import pytest
import torch
import torch.nn.functional as F

from mmdag.attacks import TOGFabrication, TOGVanishing
from mmdag.engine.step import attack_mode
import reference_tog as ref

#: float64 all through: the loss and its gradient agree to rounding (about
#: 1e-16 relative, summed over a few thousand terms, far below 1e-9); a
#: mutation moves the value or the gradient by more than 1e-3 relative
RTOL = 1e-9
MUTATION = 1e-3

# seven zoo models in float64, each case a few forwards and backwards (several
# minutes on 2 cores): in CI, not by default
pytestmark = pytest.mark.slow


class _FloatNMS:
    """mmcv's compiled NMS takes float32 only: its boxes and scores are
    rounded to float32 to choose the kept indices (the same in mmdag's path
    and the reference's, which both call it); everything else stays float64."""

    def __init__(self, ext):
        self.ext = ext

    def nms(self, bboxes, scores, **kwargs):
        return self.ext.nms(bboxes.float(), scores.float(), **kwargs)

    def __getattr__(self, name):
        return getattr(self.ext, name)


@pytest.fixture(scope='module', autouse=True)
def float64_nms():
    import importlib
    nms = importlib.import_module('mmcv.ops.nms')   # the module, not mmcv.ops' function
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(nms, 'ext_module', _FloatNMS(nms.ext_module))
        yield


def in_double(model):
    """The model in float64, its data preprocessor's output too (YOLOX does
    not normalise: its input would stay float32); :func:`in_float` undoes it."""
    model = model.double()
    pre = model.data_preprocessor
    stock = pre.forward

    def forward(data, training=False):
        out = stock(data, training)
        return dict(out, inputs=out['inputs'].double())

    pre.forward = forward
    return model


def in_float(model):
    del model.data_preprocessor.forward
    return model.float()


def stock_scores(model, image, sample, heads):
    """What the stock ``test_step`` passes to ``predict_by_feat`` of each of
    ``heads`` (name -> module), with their gradient to ``image``: the
    positional and keyword arguments of the first call."""
    seen = {}

    def spy(name, stock):
        def fn(*args, **kwargs):
            seen.setdefault(name, (args, kwargs))
            return stock(*args, **kwargs)
        return fn

    for name, head in heads.items():
        head.predict_by_feat = spy(name, head.predict_by_feat)
    try:
        model.test_step(dict(inputs=[image], data_samples=[sample]))
    finally:
        for head in heads.values():
            del head.predict_by_feat
    return seen


def levels_channels_last(maps, k):
    """Level maps ``[1, A * k, H, W]`` -> ``[1, N, k]`` (Keras ``Reshape((-1, k))``
    of the channels-last output, levels concatenated)."""
    return torch.cat([m.permute(0, 2, 3, 1).reshape(1, -1, k) for m in maps], 1)


def background_first(scores):
    """mmdet's ``[.., C + 1]`` with background last -> background first, as TOG's models."""
    return torch.cat([scores[..., -1:], scores[..., :-1]], -1)


def ours(targets, x, mode):
    image = x.clone().requires_grad_(True)
    loss = targets.candidate_loss([image], [0], mode)[0]
    grad, = torch.autograd.grad(loss, image)
    return loss.detach(), grad


def references(x, outputs, losses):
    """``outputs(image)`` once (the stock forward, with its graph), then each
    of ``losses`` (functions of those outputs) with its gradient to the image."""
    image = x.clone().requires_grad_(True)
    out = outputs(image)
    res = []
    for fn in losses:
        loss = fn(*out)
        grad, = torch.autograd.grad(loss, image, retain_graph=True)
        res.append((loss.detach(), grad))
    return res


def assert_same(mine, theirs):
    (v1, g1), (v2, g2) = mine, theirs
    assert v1.dtype == g1.dtype == torch.float64
    torch.testing.assert_close(v1, v2, rtol=RTOL, atol=0)
    assert float(g2.abs().max()) > 0
    torch.testing.assert_close(g1, g2, rtol=RTOL, atol=RTOL * float(g2.abs().max()))


def assert_caught(mine, mutants):
    """Each mutant's value or gradient is far from mmdag's (module docstring)."""
    v1, g1 = mine
    for k, (v2, g2) in enumerate(mutants):
        dv = abs(float(v2 - v1)) / abs(float(v1))
        dg = float((g2 - g1).norm() / g1.norm())
        assert max(dv, dg) > MUTATION, f'mutant {k}: value {dv:.2e}, gradient {dg:.2e} apart'


def check(targets, x, mode, outputs, loss, mutants):
    """mmdag's candidate loss of ``mode`` is the reference ``loss`` of the
    stock ``outputs``, value and gradient; every mutant is caught."""
    mine = ours(targets, x, mode)
    got = references(x, outputs, [loss] + list(mutants))
    assert_same(mine, got[0])
    assert_caught(mine, got[1:])


def bce(target, z):
    """Keras's ``binary_crossentropy(target, z, from_logits=True)``, summed."""
    return ref.keras_binary_crossentropy_from_logits(torch.full_like(z, target), z).sum()


# ------------------------------------------------------------ two-stage: frcnn.py
def frcnn_outputs(model, sample, targets):
    """TOG's ``rpn_score [N, 2]`` (background, object) and ``roi_score``
    (background first) from what the stock prediction reads (mmdet's sigmoid
    RPN logit ``z`` scores the object against a background of 0), and the
    RoI head's scores of the matched proposals (for a mutant)."""
    def outputs(image):
        seen = stock_scores(model, image, sample,
                            dict(rpn=model.rpn_head, roi=model.roi_head.bbox_head))
        z = levels_channels_last(seen['rpn'][0][0], 1)[0, :, 0]
        rpn_score = torch.stack([torch.zeros_like(z), z], 1)
        roi_score = background_first(seen['roi'][1]['cls_scores'][0])
        matched = background_first(targets.logits([image], [0])[0])
        assert len(matched) and len(roi_score)
        return rpn_score, roi_score, matched
    return outputs


@pytest.fixture(scope='module')
def faster(float64_nms):
    from mmdag.targets import TwoStageTargets
    from test_two_stage import TARGETS, build, make_batch
    model = in_double(build('faster_fpn'))
    # fewer proposals than the zoo's 1000: mmcv's RoIAlign backward on a CPU
    # is most of the time (both paths read this setting)
    model.rpn_head.test_cfg.max_per_img = 64
    batch = make_batch(num=1, seed=4)
    x = batch['inputs'][0].double()
    with attack_mode(model):
        targets = TwoStageTargets(model, [x], batch['data_samples'],
                                  **dict(TARGETS, rpn_max_per_img=32))
        # random weights rarely score the true class first: the clean
        # prediction as the label, so the attack's statistics have targets
        with torch.no_grad():
            targets.labels = [targets.logits([x], [0])[0].argmax(1)]
    return model, x, batch['data_samples'][0], targets


@pytest.mark.parametrize('mode', ['vanishing', 'fabrication'])
def test_two_stage_is_tog_frcnn(faster, mode):
    model, x, sample, targets = faster
    loss = dict(vanishing=ref.frcnn_object_vanishing_loss,
                fabrication=ref.frcnn_object_fabrication_loss)[mode]

    def rpn(rpn_score):
        return F.cross_entropy(rpn_score, torch.full(rpn_score.shape[:1], int(mode != 'vanishing')))

    mutants = [lambda r, o, m: loss(r, o) - rpn(r),            # the RPN term dropped
               lambda r, o, m: rpn(r),                          # the RoI term dropped
               lambda r, o, m: loss(r, m),                      # the RoI head on the matched
               lambda r, o, m: 2 * rpn(r) - loss(r, o)]         # the RoI term's sign
    with attack_mode(model):
        check(targets, x, mode, frcnn_outputs(model, sample, targets),
              lambda r, o, m: loss(r, o), mutants)


# --------------------------------------------------------- objectness: yolov3.py
def yolov3_outputs(model, sample):
    def outputs(image):
        seen = stock_scores(model, image, sample, dict(head=model.bbox_head))
        return [m.permute(0, 2, 3, 1) for m in seen['head'][0][0]],    # Keras: channels last
    return outputs


def yolox_outputs(model, sample):
    """YOLOX's objectness maps as one-anchor, class-less YOLOv3 outputs: each
    cell's ``[x, y, w, h, obj]`` with the objectness at 4 (the box part is
    not read)."""
    def outputs(image):
        seen = stock_scores(model, image, sample, dict(head=model.bbox_head))
        return [torch.cat([o.new_zeros(o.shape[0], 4, *o.shape[2:]), o], 1).permute(0, 2, 3, 1)
                for o in seen['head'][0][2]],
    return outputs


def objectness_model(name):
    from test_one_stage import make_batch
    if name == 'yolov3':
        from test_one_stage import build
        return build('yolov3'), make_batch(96, 128, num=1, seed=2), yolov3_outputs, 3
    from test_dense_heads import build
    model = build('yolox/yolox_tiny_8xb8-300e_coco.py')
    return model, make_batch(96, 128, num=1, seed=2), yolox_outputs, 1


@pytest.mark.parametrize('name', ['yolov3', 'yolox'])
@pytest.mark.parametrize('mode', ['vanishing', 'fabrication'])
def test_objectness_heads_are_tog_yolov3(float64_nms, name, mode):
    from mmdag.targets import OneStageTargets
    model, batch, outputs, anchors = objectness_model(name)
    num_classes = model.bbox_head.num_classes if name == 'yolov3' else 0
    x, sample = batch['inputs'][0].double(), batch['data_samples'][0]
    loss = dict(vanishing=ref.yolov3_object_vanishing_loss,
                fabrication=ref.yolov3_object_fabrication_loss)[mode]
    target = float(mode == 'fabrication')
    with attack_mode(model):   # in float32: mmdet's SimOTA assigner takes no float64
        targets = OneStageTargets(model, [x.float()], [sample], score_thr=0.0)
    in_double(model)
    index = targets.index[0]

    def flat(maps):   # [N, 5 + C] in prior order
        return torch.cat([ref.yolo_head_raw_pred(m, anchors, num_classes).reshape(
            -1, 5 + num_classes) for m in maps])

    mutants = [lambda maps: bce(target, flat(maps)[index, 4]),     # the matched priors only
               lambda maps: bce(1 - target, flat(maps)[:, 4])]     # the other direction
    if num_classes:   # the class logits (the matched attacks' choice), not the objectness
        mutants.append(lambda maps: bce(target, flat(maps)[:, 5:]))
    assert 0 < len(index) < len(flat(outputs(model, sample)(x)[0]))
    with attack_mode(model):
        check(targets, x, mode, outputs(model, sample),
              lambda maps: loss(maps, num_classes, anchors), mutants)


# ---------------------------------------------------- class scores: ssd.py, sigmoid
@pytest.mark.parametrize('name', ['ssd300', 'retinanet'])
@pytest.mark.parametrize('mode', ['vanishing', 'fabrication'])
def test_dense_class_heads(float64_nms, name, mode):
    """SSD: TOG's ``ssd.py``; RetinaNet (sigmoid, no model in TOG): YOLOv3's
    objectness rule on every class logit of every prior, summed."""
    from mmdag.targets import OneStageTargets
    from test_one_stage import ZOO, build, make_batch
    model = in_double(build(name))
    batch = make_batch(*ZOO[name][1], num=1, seed=3)
    x, sample = batch['inputs'][0].double(), batch['data_samples'][0]
    head = model.bbox_head
    k = head.cls_out_channels
    if not hasattr(head, 'loss_cls'):
        head.loss_cls = None   # mmdet 3.3's SSDHead has none, and its stock predict reads it

    def outputs(image):   # [1, N, K] in prior order
        return levels_channels_last(stock_scores(model, image, sample, dict(h=head))['h'][0][0], k),

    with attack_mode(model):
        targets = OneStageTargets(model, [x], [sample], score_thr=0.0)
    index = targets.index[0]
    target = float(mode == 'fabrication')
    if name == 'ssd300':
        loss = dict(vanishing=ref.ssd_object_vanishing_loss,
                    fabrication=ref.ssd_object_fabrication_loss)[mode]
        mutants = [lambda z: loss(background_first(z[:, index])),      # the matched priors only
                   lambda z: -loss(background_first(z))]                # the other direction

        def reference(z):
            return loss(background_first(z))
    else:
        mutants = [lambda z: bce(target, z[:, index]),
                   lambda z: bce(1 - target, z)]

        def reference(z):
            return bce(target, z)
    assert 0 < len(index) < outputs(x)[0].shape[1]
    with attack_mode(model):
        check(targets, x, mode, outputs, reference, mutants)


# ------------------------------------------------------------------- queries
@pytest.mark.parametrize('name', ['detr', 'dino'])
@pytest.mark.parametrize('mode', ['vanishing', 'fabrication'])
def test_queries(float64_nms, name, mode):
    """DETR (softmax with no-object): TOG's ``ssd.py`` rule over every query;
    DINO (sigmoid): YOLOv3's rule on every class logit of every query, the
    queries chosen on the current image (the stock prediction's)."""
    from test_queries import batch as query_batch
    from test_queries import build, targets_of
    model = in_double(build(name))
    try:
        data = query_batch(seeds=(5, ))
        x, sample = data['inputs'][0].double(), data['data_samples'][0]

        def outputs(image):   # the last decoder layer's class logits [1, Q, K]
            return stock_scores(model, image, sample, dict(h=model.bbox_head))['h'][0][0][-1],

        with attack_mode(model):
            targets = targets_of(model, dict(inputs=[x], data_samples=[sample]))
        index = targets.index[0]
        if len(index) == model.num_queries:
            # DETR's biased head sees the box in every query (all are
            # targets): the mutant takes half of them
            index = index[:len(index) // 2]
        target = float(mode == 'fabrication')
        if name == 'detr':
            loss = dict(vanishing=ref.ssd_object_vanishing_loss,
                        fabrication=ref.ssd_object_fabrication_loss)[mode]
            mutants = [lambda z: loss(background_first(z[:, index])),
                       lambda z: -loss(background_first(z))]

            def reference(z):
                return loss(background_first(z))
        else:
            mutants = [lambda z: bce(target, z[:, index]), lambda z: bce(1 - target, z)]

            def reference(z):
                return bce(target, z)
        assert 0 < len(index) < outputs(x)[0].shape[1]
        with attack_mode(model):
            check(targets, x, mode, outputs, reference, mutants)
    finally:
        in_float(model)   # test_queries keeps its models: give it back in float32


# --------------------------------------------------------------- the attack
def test_the_attack_descends_the_candidate_loss(faster):
    """TOG's first step from a zero start is minus alpha times the sign of
    the gradient of its candidate loss (vanishing or fabrication); the
    attack stays in its budget."""
    model, x, sample, targets = faster
    with attack_mode(model):
        for cls in (TOGVanishing, TOGFabrication):
            res = cls(max_iters=1, random_start=False)([x.float()], targets)
            _, g = ours(targets, x, cls.mode)
            move = g.abs() > 1e-6 * float(g.abs().max())   # a sign decided well above rounding
            expect = (x - 2.0 * g.sign()).clamp(0, 255) - x
            torch.testing.assert_close(res.perturbations[0].double()[move], expect[move])
            assert res.stats[0]['backwards'] == 1


def detections(model, image, sample, thr):
    """The stock prediction's number of boxes scored above ``thr``, and their total score."""
    with torch.no_grad():
        pred = model.test_step(dict(inputs=[image], data_samples=[sample]))[0]
    scores = pred.pred_instances.scores
    return int((scores > thr).sum()), float(scores[scores > thr].sum())


def rpn_objectness(model, image, sample):
    """The mean objectness (sigmoid) of every RPN anchor of the stock prediction."""
    seen = stock_scores(model, image, sample, dict(rpn=model.rpn_head))
    return float(torch.cat([m.flatten() for m in seen['rpn'][0][0]]).sigmoid().mean())


@pytest.mark.parametrize('kind', ['vanishing', 'fabrication'])
def test_detections_vanish_or_objects_appear_within_the_budget(kind):
    """TOG's default budget and schedule (8/255, 2/255, 10 steps) on a Faster
    R-CNN. Vanishing, its RoI head biased to see class 1 everywhere: fewer
    detections above 0.3 in the stock prediction, with less total score.
    Fabrication (random weights, whose RoI scores are near uniform and where
    TOG's RoI term, away from each proposal's argmax, moves little): every
    anchor's objectness up on average, and TOG's fabrication loss down."""
    from mmdag.targets import TwoStageTargets
    from test_two_stage import TARGETS, build, make_batch
    model = build('faster_fpn')
    model.rpn_head.test_cfg.max_per_img = 64
    if kind == 'vanishing':
        with torch.no_grad():
            model.roi_head.bbox_head.fc_cls.bias[1] += 5.0
    batch = make_batch(num=1, seed=4)
    x, sample = batch['inputs'][0].float(), batch['data_samples'][0]
    with attack_mode(model):
        targets = TwoStageTargets(model, [x], [sample], **dict(TARGETS, rpn_max_per_img=32))
        with torch.no_grad():   # targets for the statistics (TOG's loss needs none)
            targets.labels = [targets.logits([x], [0])[0].argmax(1)]
        attack = TOGVanishing() if kind == 'vanishing' else TOGFabrication()
        res = attack([x], targets)
        adv = res.adv_images[0]
        if kind == 'vanishing':
            before, after = detections(model, x, sample, 0.3), detections(model, adv, sample, 0.3)
            assert before[0] > 0 and after[0] < before[0] and after[1] < before[1]
        else:
            with torch.no_grad():
                loss = [float(targets.candidate_loss([im], [0], 'fabrication')[0])
                        for im in (x, adv)]
                obj = [rpn_objectness(model, im, sample) for im in (x, adv)]
            assert loss[1] < loss[0] and obj[1] > obj[0]
    assert float(res.perturbations[0].abs().max()) <= 8.0 + 1e-4
    assert res.stats[0]['backwards'] == 10
