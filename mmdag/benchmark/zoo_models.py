"""The zoo's models for the benchmark room: which families and configs
the installed mmseg / mmdet hold, their models with random weights on the
CPU (no download) and a one-image batch with one ground-truth object.

Used by the zoo survey (:mod:`mmdag.benchmark.coverage`) and the zoo
benchmark (:mod:`mmdag.benchmark.zoo_list`).
"""
import contextlib
import copy
import importlib
import io
import logging
import os
import os.path as osp
import re
import warnings
from typing import Dict, List, Sequence, Tuple

import torch

PACKAGES = ('mmseg', 'mmdet')
MAX_TRIES = 3
#: default input size (h, w); the zoo crop sizes (512x1024, 1333x800) are
#: too slow for a survey on a CPU
SIZE = (256, 256)
#: the one ground-truth box of a detection sample, in pixels of SIZE
DET_BOX = (64., 48., 192., 208.)

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
    else:
        _fill_uninitialised(model, seed)
    from mmdag.compat import repair_stock_model
    repair_stock_model(model)   # what the DAG hook does before a test run
    return revert_sync_batchnorm(model).eval()


def _fill_uninitialised(model, seed: int = 0) -> None:
    """Parameters that a constructor leaves as uninitialised memory (only
    ``init_weights`` sets them) get the value ``init_weights`` would give, so
    that a survey is deterministic: mmdet's ``L2Norm`` (SSD's neck) scale,
    and the ``level_embed`` of Deformable DETR, DINO and DDQ (a standard
    normal draw in ``init_weights``; here from a generator seeded by
    ``seed``, so that the draw does not depend on what ran before)."""
    for m in model.modules():
        if type(m).__name__ == 'L2Norm' and isinstance(getattr(m, 'scale', None), (int, float)):
            with torch.no_grad():
                m.weight.fill_(float(m.scale))
        embed = getattr(m, 'level_embed', None)
        if isinstance(embed, torch.nn.Parameter):
            with torch.no_grad():
                embed.copy_(torch.randn(embed.shape, generator=torch.Generator().manual_seed(
                    seed), dtype=embed.dtype))


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
