"""Zoo family coverage: which model families of the installed mmseg / mmdet
config trees mmdag attacks.

For every family (a sub-folder of ``<package>/.mim/configs``) one config is
built with random weights on the CPU (no download), its stock ``test_step``
is run on a one-image batch with one ground-truth object, then
:func:`mmdag.apis.attack_batch` is asked for a few DAG iterations. A family is

- ``attacked``: the attack returned (the adapter, the number of targets and
  the attack's status are recorded; zero targets still count);
- ``refused``: mmdag raised one of its one-line errors
  (:class:`mmdag.errors.MMDagError`, e.g. ``UnsupportedModelError``);
- ``crashed``: anything else (or an ``MMDagError`` whose message is not one
  line): the exception, its first line and the innermost traceback frame;
- ``no_stock_forward``: no candidate config builds offline and runs its own
  ``test_step`` on the CPU; excluded from the percentages.

With random weights the adapter's defaults often leave nothing to update (no
two-stage proposal scores its true class above 0.1, no pixel predicts the
ground truth); such a family is attacked a second time with
:data:`RELAXED_TARGETS` so that the gradient path runs too, and a failure
there counts. The ground-truth class is 1 (0 for one-class models).

``tools/analysis/zoo_coverage.py`` is the command line; the slow test
``tests/test_zoo/test_zoo_coverage.py`` compares a full survey with the
committed ``tests/test_zoo/families.json``.
"""
import contextlib
import copy
import gc
import importlib
import io
import logging
import os
import os.path as osp
import re
import time
import traceback
import warnings
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import torch

from mmdag.fileio import write_atomic  # noqa: F401  (also tools/analysis/zoo_coverage.py's)

PACKAGES = ('mmseg', 'mmdet')
OUTCOMES = ('attacked', 'refused', 'crashed', 'no_stock_forward')
#: candidate configs tried per family (the first that builds and runs wins)
MAX_TRIES = 3
#: default input size (h, w); the zoo crop sizes (512x1024, 1333x800) are
#: too slow for a survey on a CPU
SIZE = (256, 256)
#: the one ground-truth box of a detection sample, in pixels of SIZE
DET_BOX = (64., 48., 192., 208.)
README_START = '<!-- zoo-coverage:start -->'
README_END = '<!-- zoo-coverage:end -->'

#: explicit config per family where the preference rule picks something
#: unsuitable (paths relative to the package's config folder)
PREFERRED: Dict[str, str] = {
    # the rule's first pick is htc-without-semantic (sorts first); the
    # family's reference config is HTC with its semantic branch
    'mmdet::htc': 'htc/htc_r50_fpn_1x_coco.py',
    # the rule's first pick is the instance-segmentation variant RTMDet-Ins;
    # the family's detector is RTMDet
    'mmdet::rtmdet': 'rtmdet/rtmdet_tiny_8xb32-300e_coco.py',
    # the COCO-Stuff config puts 171 class names x 14 prompt templates through
    # the CLIP text encoder in its forward: about 8 min on 2 CPU cores; the
    # VOC config (21 classes) is the same model
    'mmseg::san': 'san/san-vit-b16_voc12aug-640x640.py',
    # time, on 2 CPU cores: the C4 config (sorts first) runs ResNet stage 5
    # on each of the 3000 dense proposals mmdag keeps, about 3 min; the FPN
    # one is the config configs/dag uses
    'mmdet::pascal_voc': 'pascal_voc/faster-rcnn_r50_fpn_1x_voc0712.py',
    # time: the rule picks the ResNeSt-101 Cascade Mask R-CNN (sorts first,
    # 2 min); ResNeSt-50 Faster R-CNN is the family's smallest
    'mmdet::resnest': 'resnest/faster-rcnn_s50_fpn_syncbn-backbone+head_ms-range-1x_coco.py',
    # time: SABL Cascade R-CNN (sorts first) takes 1.5 min; SABL Faster R-CNN
    # has the same SABL box head
    'mmdet::sabl': 'sabl/sabl-faster-rcnn_r50_fpn_1x_coco.py',
    # time: with random weights the R-CNN configs' near-uniform scores over
    # 13204 classes (1/13205) pass their score_thr 1e-4, so their stock
    # forward runs NMS over about 1000 x 13204 boxes: 9 to 14 min; the FCOS
    # config's sigmoid scores start at its prior 0.01
    # SSD300 is the paper's SSD (the rule picks SSDLite)
    'mmdet::ssd': 'ssd/ssd300_coco.py',
    'mmdet::v3det': 'v3det/fcos_r50_fpn_8x4_sample1e-3_mstrain_v3det_2x.py',
}

#: target settings of a second attack when the adapter's defaults made no
#: update (no target, or none still correct), so that the attack's gradient
#: path runs for every attacked family. With random weights a detector's
#: class scores are near uniform (about 1/81 for a COCO softmax box head,
#: under the two-stage default ``score_thr=0.1``; the one-stage setting is
#: that of the repo's random-weight tests in tests/test_targets; two-stage:
#: every one of the 300 highest-objectness proposals that touches the box,
#: about 150, where the default 3000 proposals cost 3 times as long and the
#: 300 at IoU > 0.1 are often none), and a segmentor predicts one class
#: everywhere, often neither of the ground truth's two (then every pixel is
#: already wrong; ``use_gt=False`` labels pixels by the prediction).
RELAXED_TARGETS: Dict[str, dict] = {
    'TwoStageTargets': dict(score_thr=0.0, iou_thr=0.0, rpn_max_per_img=300),
    'OneStageTargets': dict(score_thr=1e-6),
    # random query boxes of two-stage DETRs are a few pixels wide: IoU ~0.005
    'QueryTargets': dict(score_thr=1e-6, iou_thr=1e-3),
    'SegmentationTargets': dict(use_gt=False),
}

#: per-family input size (h, w) where the default does not fit the model or
#: is far too slow
SIZE_OVERRIDES: Dict[str, Tuple[int, int]] = {
    # absolute position embeddings / relative position tables built for the
    # crop size (1 + 40 x 40 and 1 + 32 x 32 tokens of 16 pixels): any other
    # input size fails in the stock forward
    'mmseg::beit': (640, 640),
    'mmseg::mae': (512, 512),
    # LR-ASPP's 49x49 average pool (stride 16, 20) needs 1/8 feature maps of
    # at least 49 pixels
    'mmseg::mobilenet_v3': (512, 512),
    # time: slide inference with 64x64 crops at stride 42 is 36 UNet forwards
    # at 256x256 (nearly 2 min), 9 at 128x128
    'mmseg::unet': (128, 128),
    # mmcv's CPU deformable conv (DDOD's head) refuses a map smaller than its
    # 3x3 kernel: P7 is 2x2 at 256, 3x3 at 384
    'mmdet::ddod': (384, 384),
    # SSD300's last extra layers need at least 300x300 (a 3x3 kernel on a 2x2
    # map at 256x256)
    'mmdet::ssd': (320, 320),
    # time: Hourglass-104 with corner pooling takes 2.5 to 3 min at 256x256
    'mmdet::cornernet': (128, 128),
    'mmdet::centripetalnet': (128, 128),
}

#: DAG iterations of the second attack with :data:`RELAXED_TARGETS`: one
#: update runs the gradient path; a second would double its cost
RELAXED_ITERS = 1

# name tokens of small / reference backbones, preferred within a folder in
# this order (a name's rank is that of its best token)
_SMALL = tuple(re.compile(p) for p in (
    r'(?<![a-z0-9])r18', r'tiny|(?:^|[_-])t[_-]', r'(?<![a-z0-9])r50', r'mobilenet', r'nano',
    r'(?:^|[_-])(?:s\d*|small)[_-]', r'[_-]b0[_-]'))


# --------------------------------------------------------------------------
# families and configs


def config_root(package: str) -> str:
    """``<site-packages>/<package>/.mim/configs`` of an installed package."""
    mod = importlib.import_module(package)
    return osp.join(osp.dirname(mod.__file__), '.mim', 'configs')


def _preference(rel: str):
    """Sort key of a config path relative to its family folder: configs at
    the top of the folder, then small backbones, then plain sorted order."""
    name = osp.basename(rel)
    rank = min((k for k, p in enumerate(_SMALL) if p.search(name)), default=len(_SMALL))
    return (rel.count('/'), rank, rel)


def family_configs(family: str) -> List[str]:
    """The family's config files (``'<folder>/<file>.py'``, relative to the
    package's config root), in the order they are tried."""
    package, folder = family.split('::')
    root = config_root(package)
    rels = []
    for dirpath, dirnames, filenames in os.walk(osp.join(root, folder)):
        dirnames[:] = sorted(d for d in dirnames if d != '__pycache__')
        sub = osp.relpath(dirpath, osp.join(root, folder)).replace(os.sep, '/')
        for f in filenames:
            if f.endswith('.py'):
                rels.append(f if sub == '.' else f'{sub}/{f}')
    rels = [f'{folder}/{r}' for r in sorted(rels, key=_preference)]
    first = PREFERRED.get(family)
    if first in rels:
        rels.remove(first)
        rels.insert(0, first)
    return rels


_HAS_MODEL: Dict[str, bool] = {}


def _has_model(path: str) -> bool:
    """Whether a config file defines a ``model`` (cached; custom imports are
    not imported for this check, a config that does not parse counts as one
    with a model so that its error is reported when it is tried)."""
    if path not in _HAS_MODEL:
        from mmengine.config import Config
        try:
            with _quiet():
                cfg = Config.fromfile(path, import_custom_modules=False)
            _HAS_MODEL[path] = isinstance(cfg.get('model'), dict)
        except Exception:
            _HAS_MODEL[path] = True
    return _HAS_MODEL[path]


def list_families(packages: Sequence[str] = PACKAGES) -> List[str]:
    """``'<package>::<folder>'`` for every model-family folder (``_base_`` and
    folders without any config that defines a ``model`` left out)."""
    out = []
    for package in packages:
        root = config_root(package)
        for folder in sorted(os.listdir(root)):
            if folder.startswith(('_', '.')) or not osp.isdir(osp.join(root, folder)):
                continue
            family = f'{package}::{folder}'
            if any(_has_model(osp.join(root, rel)) for rel in family_configs(family)):
                out.append(family)
    return out


# --------------------------------------------------------------------------
# model and data


def _strip_pretrained(node):
    """Drop every ``pretrained`` key and every ``Pretrained`` init_cfg (also
    inside lists of init_cfgs) of a model config, recursively, in place."""
    if isinstance(node, dict):
        node.pop('pretrained', None)
        init = node.get('init_cfg')
        if isinstance(init, dict) and init.get('type') == 'Pretrained':
            node.pop('init_cfg')
        elif isinstance(init, (list, tuple)):
            kept = [c for c in init if not (isinstance(c, dict) and c.get('type') == 'Pretrained')]
            if kept:
                node['init_cfg'] = kept
            else:
                node.pop('init_cfg')
        for v in node.values():
            _strip_pretrained(v)
    elif isinstance(node, (list, tuple)):
        for v in node:
            _strip_pretrained(v)
    return node


def _local_norms(node):
    """mmcv's ``MMSyncBN`` needs a process group when it is built; at test
    time it computes what ``BN`` computes, so the survey builds ``BN``
    (``SyncBN`` is reverted after the build, as mmengine's test tools do)."""
    if isinstance(node, dict):
        if node.get('type') == 'MMSyncBN':
            node['type'] = 'BN'
        for v in node.values():
            _local_norms(v)
    elif isinstance(node, (list, tuple)):
        for v in node:
            _local_norms(v)
    return node


def load_config(package: str, rel: str):
    """The config ``rel`` of ``package``'s config tree (custom imports done)."""
    from mmengine.config import Config
    return Config.fromfile(osp.join(config_root(package), rel))


def build_model(package: str, cfg, seed: int = 0, init_weights: bool = False):
    """The model of ``cfg`` with random weights from ``seed``, on the CPU, in
    eval mode: pretrained weights dropped, SyncBN reverted, and
    ``init_weights`` called only when asked (the survey does not)."""
    from mmengine.model.utils import revert_sync_batchnorm
    from mmengine.registry import init_default_scope
    init_default_scope(package)
    models = importlib.import_module(f'{package}.registry').MODELS
    model_cfg = _local_norms(_strip_pretrained(copy.deepcopy(cfg.model)))
    torch.manual_seed(seed)
    model = models.build(model_cfg)
    if init_weights:
        model.init_weights()
    _fill_uninitialised(model)
    from mmdag.compat import repair_stock_model
    repair_stock_model(model)   # what the DAG hook does before a test run
    return revert_sync_batchnorm(model).eval()


def _fill_uninitialised(model) -> None:
    """Parameters that a constructor leaves as uninitialised memory (only
    ``init_weights`` sets them) get the value ``init_weights`` would give, so
    that a survey is deterministic: mmdet's ``L2Norm`` (SSD's neck) scale."""
    for m in model.modules():
        if type(m).__name__ == 'L2Norm' and isinstance(getattr(m, 'scale', None), (int, float)):
            with torch.no_grad():
                m.weight.fill_(float(m.scale))


#: rows of grey padding under each detection family's survey image
PAD_ROWS = 16


def make_batch(package: str, size: Tuple[int, int] = SIZE, seed: int = 0, label: int = 1,
               pad: int = 0) -> dict:
    """A one-image data batch as a test dataloader yields it: a seeded random
    uint8 image ``[3, H, W]`` and a data sample with one ground-truth object
    (mmdet: one box of class ``label``; mmseg: ``label`` in a centred
    rectangle on class 0). ``pad`` (mmdet) makes the bottom ``pad`` rows a
    grey padding that a test pipeline's ``Pad`` added (as RTMDet's and
    YOLOX's do): ``pad_shape`` set, the image ``H - pad`` rows high."""
    from mmengine.structures import InstanceData, PixelData
    h, w = size
    g = torch.Generator().manual_seed(seed)
    img = (torch.rand(3, h, w, generator=g) * 255).round().to(torch.uint8)
    if package == 'mmdet':
        from mmdet.structures import DetDataSample
        meta = dict(img_shape=(h, w), ori_shape=(h, w), scale_factor=(1.0, 1.0),
                    img_path='coverage.jpg', img_id=0)
        if pad:
            img[:, h - pad:] = 114
            meta.update(ori_shape=(h - pad, w), pad_shape=(h, w, 3))
        s = DetDataSample(metainfo=meta)
        sy, sx = h / SIZE[0], w / SIZE[1]
        x1, y1, x2, y2 = DET_BOX
        s.gt_instances = InstanceData(bboxes=torch.tensor([[x1 * sx, y1 * sy, x2 * sx, y2 * sy]]),
                                      labels=torch.tensor([label]))
    elif package == 'mmseg':
        from mmseg.structures import SegDataSample
        s = SegDataSample(metainfo=dict(ori_shape=(h, w), img_shape=(h, w), pad_shape=(h, w),
                                        img_path='coverage.jpg'))
        lab = torch.zeros(1, h, w, dtype=torch.long)
        lab[:, h // 4:h - h // 4, w // 4:w - w // 4] = label
        s.gt_sem_seg = PixelData(data=lab)
    else:
        raise ValueError(f'unknown package {package!r}: expected one of {PACKAGES}')
    return dict(inputs=[img], data_samples=[s])


# --------------------------------------------------------------------------
# one family


@contextlib.contextmanager
def _quiet():
    """No warnings, mmengine log records below ERROR, or prints while a zoo
    model is built and run."""
    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    level = logger.level
    handler_levels = [h.level for h in logger.handlers]
    logger.setLevel(logging.ERROR)
    for h in logger.handlers:
        h.setLevel(logging.ERROR)
    sink = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(sink), \
                contextlib.redirect_stderr(sink):
            warnings.simplefilter('ignore')
            yield
    finally:
        logger.setLevel(level)
        for h, lv in zip(logger.handlers, handler_levels):
            h.setLevel(lv)


def _short_path(path: str) -> str:
    path = path.replace(os.sep, '/')
    for mark in ('/site-packages/', '/dist-packages/'):
        if mark in path:
            return path.split(mark, 1)[1]
    repo = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))).replace(os.sep, '/') + '/'
    return path[len(repo):] if path.startswith(repo) else path


def _first_line(e: BaseException) -> str:
    msg = str(e).strip()
    return msg.splitlines()[0].strip() if msg else ''


def describe_exception(e: BaseException, frames: bool = False) -> str:
    """``Type: first line of the message``; with ``frames`` also the
    innermost traceback frame (and the innermost mmdag frame if another)."""
    text = f'{type(e).__name__}: {_first_line(e)}'.rstrip(': ')
    if frames:
        tb = traceback.extract_tb(e.__traceback__)
        if tb:
            where = [f'{_short_path(tb[-1].filename)}:{tb[-1].lineno}']
            own = [f for f in tb if '/mmdag/' in f.filename.replace(os.sep, '/')]
            if own and own[-1] is not tb[-1]:
                where.append(f'{_short_path(own[-1].filename)}:{own[-1].lineno}')
            text += f' (at {"; ".join(where)})'
    if e.__cause__ is not None:   # e.g. mmengine's ImportError of a custom import
        text += f' [from {type(e.__cause__).__name__}: {_first_line(e.__cause__)}]'
    return text


def _record(family: str) -> dict:
    package = family.split('::')[0]
    return dict(family=family, package=package, config=None, outcome=None, reason='', adapter=None,
                num_targets=None, iters=None, status=None, seconds=0.0, tried=[], failures={},
                size=list(SIZE_OVERRIDES.get(family, SIZE)), gt_label=None, relaxed=None,
                timing={}, violations=[], bias_note=None, figures={})


def survey_family(family: str, max_iters: int = 2) -> dict:
    """Build one config of ``family`` with random weights, run its stock
    forward, then ``max_iters`` DAG iterations; returns the family's record.

    Keys: family, package, config (``'<package>::<rel path>'`` of the config
    tested, None when none ran), outcome (one of :data:`OUTCOMES`), reason
    (the refusal or crash, or why no stock forward ran), adapter (target set
    class), num_targets, iters, status, seconds, tried (configs tried),
    failures (config -> why it was not used), size (input h, w), gt_label,
    relaxed (the second attack, see :data:`RELAXED_TARGETS`) and timing
    (seconds of build, stock forward, attack). Never raises for a family's
    own failure.
    """
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    os.environ.setdefault('TRANSFORMERS_OFFLINE', '1')
    t0 = time.perf_counter()
    rec = _record(family)
    package = rec['package']
    size = tuple(rec['size'])
    timing = rec['timing']
    model = None
    try:
        root = config_root(package)
        for rel in family_configs(family):
            if len(rec['tried']) >= MAX_TRIES:
                break
            if not _has_model(osp.join(root, rel)):
                continue
            rec['tried'].append(f'{package}::{rel}')
            try:
                t = time.perf_counter()
                with _quiet():
                    model = build_model(package, load_config(package, rel))
                    timing['build'] = round(time.perf_counter() - t, 2)
                    t = time.perf_counter()
                    with torch.no_grad():
                        model.test_step(make_batch(package, size))
                    timing['forward'] = round(time.perf_counter() - t, 2)
            except Exception as e:   # noqa: B902 - any zoo failure is a finding
                rec['failures'][f'{package}::{rel}'] = describe_exception(e)
                model = None
                gc.collect()
                continue
            rec['config'] = f'{package}::{rel}'
            break
        if model is None:
            rec['outcome'] = 'no_stock_forward'
            rec['reason'] = (next(iter(rec['failures'].values())) if rec['failures']
                             else 'no config of the family defines a model')
        else:
            rec['gt_label'] = label = gt_label(model)
            t = time.perf_counter()
            rec.update(_attack(model, package, size, max_iters, label))
            timing['attack'] = round(time.perf_counter() - t, 2)
            relaxed = RELAXED_TARGETS.get(rec['adapter'])
            if rec['outcome'] == 'attacked' and relaxed and not rec['iters']:
                # random weights: the adapter's defaults left nothing to update
                t = time.perf_counter()
                again = _attack(model, package, size, min(max_iters, RELAXED_ITERS), label, relaxed)
                timing['relaxed'] = round(time.perf_counter() - t, 2)
                rec['relaxed'] = dict(targets_cfg=relaxed, **{k: again[k] for k in (
                    'outcome', 'reason', 'num_targets', 'iters', 'status')})
                # the invariants of the run that had targets
                rec['violations'] = (rec['violations']
                                     + [f'relaxed: {v}' for v in again['violations']])
                rec['bias_note'] = rec['bias_note'] or again['bias_note']
                rec['figures'] = rec['figures'] or again['figures']
                opts = ', '.join(f'{k}={v}' for k, v in relaxed.items())
                if again['outcome'] == 'attacked':
                    rec['reason'] = (f'{rec["num_targets"]} targets, {rec["iters"]} updates with '
                                     f'the adapter defaults; {again["num_targets"]} targets, '
                                     f'{again["iters"]} updates with {opts}')
                else:
                    rec['outcome'] = again['outcome']
                    rec['reason'] = f'with {opts}: {again["reason"]}'
    except Exception as e:   # noqa: B902 - the survey itself must go on
        rec['outcome'] = 'crashed'
        rec['reason'] = 'survey error: ' + describe_exception(e, frames=True)
    finally:
        del model
        gc.collect()
        rec['seconds'] = round(time.perf_counter() - t0, 2)
    return rec


def gt_label(model) -> int:
    """The class of the ground-truth object: 1, or 0 for a model with one
    class (crowd and face detectors, RPN), where 1 would be out of range
    (and, for a softmax box head, the background)."""
    heads = [getattr(model, 'decode_head', None), getattr(model, 'bbox_head', None),
             getattr(getattr(model, 'roi_head', None), 'bbox_head', None),
             getattr(model, 'rpn_head', None)]
    for head in heads:
        if isinstance(head, (torch.nn.ModuleList, list, tuple)):
            head = head[-1] if len(head) else None
        n = getattr(head, 'num_classes', None)
        if isinstance(n, int):
            return 1 if n > 1 else 0
    return 1


def _attack(model, package: str, size, max_iters: int, label: int = 1,
            targets_cfg: Optional[dict] = None) -> dict:
    """``attack_batch`` on a fresh batch, classified: outcome, reason,
    adapter, num_targets, iters and status of the image."""
    from mmdag.apis import attack_batch
    from mmdag.apis.attack import attack_mode, content_region
    from mmdag.attacks.stats import region_mask
    from mmdag.errors import MMDagError
    out = dict(outcome=None, reason='', adapter=None, num_targets=None, iters=None, status=None,
               logit_range=None, padding_linf=None, violations=[], bias_note=None, figures={})
    # detectors get a padded image (the box stays inside the image part)
    pad = PAD_ROWS if package == 'mmdet' and size[0] >= 8 * PAD_ROWS else 0
    batch = make_batch(package, size, label=label, pad=pad)
    try:
        with _quiet():
            result, targets = attack_batch(model, batch, attack=dict(max_iters=max_iters),
                                           targets_cfg=targets_cfg)
            image = batch['inputs'][0].float()
            if result.adv_images:
                image = image.to(result.adv_images[0].device)
            with attack_mode(model), torch.no_grad():
                clean = targets.logits([image], [0])[0]
    except MMDagError as e:
        msg = str(e).strip()
        if '\n' in msg:
            out['outcome'] = 'crashed'
            out['reason'] = 'multi-line MMDagError: ' + describe_exception(e, frames=True)
        else:
            out['outcome'] = 'refused'
            out['reason'] = msg
    except Exception as e:   # noqa: B902 - any failure inside mmdag is a finding
        out['outcome'] = 'crashed'
        out['reason'] = describe_exception(e, frames=True)
    else:
        stats = result.stats[0] if result.stats else {}
        iters = stats.get('iters')
        out.update(outcome='attacked', adapter=type(targets).__name__,
                   num_targets=int(len(targets.labels[0])),
                   iters=int(iters) if iters is not None else None, status=stats.get('status'))
        # invariants: the attacked quantity is pre-activation (scores or
        # probabilities would all lie in [0, 1]), and nothing moves in padding
        if clean.numel():
            out['logit_range'] = [round(float(clean.min()), 4), round(float(clean.max()), 4)]
        r = result.perturbations[0] if result.perturbations else None
        mask = region_mask(r, content_region(batch['data_samples'][0], r)) if r is not None else None
        if mask is not None:
            out['padding_linf'] = float((r * (1 - mask)).abs().max())
        if out['num_targets'] == 0:
            out['reason'] = 'zero targets'
        else:
            out.update(_invariants(model, targets, image, batch))
    return out


def _invariants(model, targets, image, batch) -> dict:
    """The survey's invariants of an attacked family (:mod:`mmdag.apis.invariants`):
    ``violations`` (lines; a check that breaks is one too), the
    pre-activation check's ``bias_note`` and the clean ``figures``."""
    from mmdag.apis import invariants as inv
    out = dict(violations=[], bias_note=None, figures={})
    sample = batch['data_samples'][0]
    checks = (('pre-activation', lambda: inv.pre_activation(model, targets, image)),
              ('settings', lambda: (inv.settings_used(targets, image, sample), None)),
              ('stock predict', lambda: inv.agrees_with_predict(model, targets, image, batch)))
    for name, check in checks:
        try:
            with _quiet():
                problems, extra = check()
        except Exception as e:   # noqa: B902 - a check that breaks is a finding
            problems, extra = [f'the check broke: {describe_exception(e, frames=True)}'], None
        out['violations'] += [f'{name}: {p}' for p in problems]
        if name == 'pre-activation':
            out['bias_note'] = extra
        elif extra:
            out['figures'] = extra
    return out


# --------------------------------------------------------------------------
# the survey and its reports


def attacked_detail(rec: dict) -> str:
    """``OneStageTargets, 40 targets`` (and what the relaxed second attack
    found, when there was one)."""
    text = f'{rec["adapter"]}, {rec["num_targets"]} targets'
    if rec['num_targets'] and rec.get('iters') == 0:
        text += ', none correct'
    again = rec.get('relaxed')
    if again:
        opts = ', '.join(f'{k}={v}' for k, v in again['targets_cfg'].items())
        text += f'; {again["num_targets"]} with {opts}'
    return text


def progress_line(k: int, n: int, rec: dict) -> str:
    """``[12/134] mmdet::rtmdet attacked (OneStageTargets, 40 targets) 6.1 s``"""
    o = rec['outcome']
    detail = attacked_detail(rec) if o == 'attacked' else _short_reason(rec['reason'])
    line = f'[{k}/{n}] {rec["family"]} {o} ({detail}) {rec["seconds"]:.1f} s'
    for v in rec.get('violations', []):
        line += f'\n    invariant violated: {v}'
    return line


def survey(families: Optional[Iterable[str]] = None, max_iters: int = 2,
           progress: Optional[Callable[[str], None]] = print) -> List[dict]:
    """Survey ``families`` (default: :func:`list_families`); one record per
    family (:func:`survey_family`), in the given order."""
    families = list_families() if families is None else list(families)
    records = []
    for k, family in enumerate(families, 1):
        rec = survey_family(family, max_iters=max_iters)
        records.append(rec)
        if progress is not None:
            progress(progress_line(k, len(families), rec))
    return records


def summarize(records: Sequence[dict]) -> Dict[str, dict]:
    """Per package: ``families``, the count of every outcome, ``runs`` (the
    families whose stock forward runs) and ``attacked_pct`` (attacked over
    runs, in %; None without runs)."""
    out = {}
    for r in records:
        s = out.setdefault(r['package'], dict(families=0, **{o: 0 for o in OUTCOMES}))
        s['families'] += 1
        s[r['outcome']] = s.get(r['outcome'], 0) + 1
    for s in out.values():
        s['runs'] = s['families'] - s['no_stock_forward']
        s['attacked_pct'] = round(100.0 * s['attacked'] / s['runs'], 1) if s['runs'] else None
    return dict(sorted(out.items(), key=lambda kv: _package_order(kv[0])))


def _package_order(package: str):
    return (PACKAGES.index(package) if package in PACKAGES else len(PACKAGES), package)


def summary_line(summary: Dict[str, dict]) -> str:
    """``mmseg: 47 of 49 families attacked (96%), 2 refused, 0 crashed, 4
    without a stock forward on the CPU; mmdet: ...``"""
    parts = []
    for package, s in summary.items():
        pct = '-' if s['attacked_pct'] is None else f'{s["attacked_pct"]:.0f}%'
        parts.append(f'{package}: {s["attacked"]} of {s["runs"]} families attacked ({pct}), '
                     f'{s["refused"]} refused, {s["crashed"]} crashed, '
                     f'{s["no_stock_forward"]} without a stock forward on the CPU')
    return '; '.join(parts)


def _cell(text) -> str:
    text = str(text if text is not None else '')
    # a compiled extension's source path names the machine that built it
    # (pip's temporary build folder): keep it from the package folder on
    text = _BUILD_PATH.sub('', text)
    return (text.replace('&', '&amp;').replace('<', '&lt;').replace('>', '&gt;')
            .replace('|', '\\|').replace('\n', ' '))


#: the folders before a package's own in a path (``/tmp/pip-install-x/mmcv_y/``)
_BUILD_PATH = re.compile(r'(?:/[^\s"/:]+)+/(?=(?:mmcv|mmdet|mmseg|mmengine|torch)/)')


def _short_reason(reason: str, limit: int = 120) -> str:
    """A long reason up to the end of its first sentence (the refusals list
    every supported family after it; coverage.json keeps the whole text)."""
    if len(reason) <= limit or '. ' not in reason:
        return reason
    return reason.split('. ', 1)[0] + '.'


def markdown_table(records: Sequence[dict]) -> str:
    """One row per family (family, config tested, outcome, adapter or reason),
    sorted by package then family, then the per-package summary line."""
    rows = ['| family | config tested | outcome | adapter or reason |', '|---|---|---|---|']
    for r in sorted(records, key=lambda r: (_package_order(r['package']), r['family'])):
        config = f'`{r["config"].split("::", 1)[1]}`' if r.get('config') else ''
        if config and r.get('size') and tuple(r['size']) != SIZE:
            config += f' at {r["size"][0]}x{r["size"][1]}'
        detail = (attacked_detail(r) if r['outcome'] == 'attacked'
                  else _short_reason(r['reason']))
        rows.append(f'| {_cell(r["family"])} | {config} | {r["outcome"]} '
                    f'| {_cell(detail)} |')
    text = '\n'.join(rows) + '\n'
    if records:
        text += ('\n' + summary_line(summarize(records)) + '.\n\nPercentages are over the families '
                 'whose stock forward runs on the CPU with random weights.\n')
    return text


def readme_section(records: Sequence[dict], max_iters: int = 2) -> str:
    """What goes between the README's zoo-coverage markers: how the table
    was made, then :func:`markdown_table`."""
    h, w = SIZE
    intro = (f'Zoo family coverage: one config per model-family folder of the installed mmseg '
             f'and mmdet config trees, built with random weights on the CPU, its stock '
             f'`test_step` run on one {h}x{w} image (unless the table says otherwise) with one '
             f'object, then {max_iters} DAG iterations. `attacked`: the attack ran (it says '
             f'nothing about success with trained weights); `refused`: mmdag said in one line '
             f'why not; `crashed`: anything else; `no_stock_forward`: no config of the family '
             f'runs offline on the CPU. Generated by '
             f'`python tools/analysis/zoo_coverage.py --update-docs`; checked by '
             f'`tests/test_zoo/test_zoo_coverage.py`.')
    return intro + '\n\n' + markdown_table(records)


def update_readme(readme_path: str, table: str) -> None:
    """Replace the text between ``<!-- zoo-coverage:start -->`` and
    ``<!-- zoo-coverage:end -->`` of ``readme_path`` with ``table`` (markers
    kept, everything else untouched), atomically."""
    with open(readme_path, encoding='utf-8') as f:
        text = f.read()
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < 0 or end < start or text.count(README_START) != 1 \
            or text.count(README_END) != 1:
        raise ValueError(f'{readme_path} needs exactly one {README_START} followed by one '
                         f'{README_END} line')
    head = text[:start + len(README_START)]
    new = head + '\n' + table.strip('\n') + '\n' + text[end:]
    write_atomic(readme_path, new)


def updated(rec: dict) -> bool:
    """Whether the attack changed the image: targets and at least one update,
    with the adapter's defaults or the relaxed second attack."""
    again = rec.get('relaxed') or {}
    return bool((rec.get('num_targets') and rec.get('iters'))
                or (again.get('num_targets') and again.get('iters')))


def expected_entry(rec: dict) -> dict:
    """A family's line of ``tests/test_zoo/families.json``: the outcome and
    config, and for an attacked family its adapter and whether it updated."""
    entry = dict(outcome=rec['outcome'], config=rec['config'])
    if rec['outcome'] == 'attacked':
        entry.update(adapter=rec['adapter'], updated=updated(rec))
    return entry


def expected_entries(records: Sequence[dict], previous: Optional[dict] = None) -> Dict[str, dict]:
    """What ``tests/test_zoo/families.json`` commits: family -> outcome and
    config, sorted by package then family; ``previous`` entries of families
    not in ``records`` are kept (a partial survey)."""
    entries = dict(previous or {})
    entries.update({r['family']: expected_entry(r) for r in records})
    return dict(sorted(entries.items(),
                       key=lambda kv: (_package_order(kv[0].split('::')[0]), kv[0])))
