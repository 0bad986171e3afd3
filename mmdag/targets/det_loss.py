"""A detector's own training loss on attacked images (what DetPGD ascends).

mmdet computes a detector's losses in ``model.loss`` only, and several heads
read ``self.training`` there (FCOS scales its box regression by the stride
only at test time; DINO builds its denoising queries only in training). So
the loss is computed in *loss mode* (:func:`loss_mode`): every module's
``training`` flag is set, except those of normalisation and dropout layers
(and attention layers with built-in dropout), which stay in eval mode: no
running statistic is updated, nothing is drawn at random by dropout, and
every flag is restored afterwards. What else the loss draws at random (the
RoI and anchor samplers of two-stage detectors, DINO's denoising noise)
comes from a generator seeded per image and step, so a run is reproducible.

The loss is computed **one image at a time**, on the image's own canvas:
mmdet normalises its losses over the batch (and across processes, through
``reduce_mean``), which would make an image's gradient depend on its batch
companions and make every process wait for the others inside an attack.
Here no collective runs (``torch.distributed`` reads as not initialised
during the call), and an image's loss is what a batch of one gives.

The ground truth is brought to the network-input frame first (the zoo test
pipelines load it in the original image's frame), with instance masks on the
input canvas for models whose loss needs them (the sample's own masks, or
the filled boxes where it has none). A model whose loss needs a semantic map
(HTC, SCNet, Panoptic FPN) is refused in one line unless the test pipeline
loads one. A head that reads the training epoch (TOOD's assigner switch)
sees the end of training. A loss that needs a package not installed (PAA:
scikit-learn) is refused in one line naming it.

**The clean detections as the ground truth** (TOG's untargeted and mislabel
attacks, ``git-disl/TOG`` ``tog/attacks.py``): ``detector_loss(...,
gt='clean')`` takes as the ground truth of an image the model's own
detections of the clean image (``model.predict``, in the input frame, scores
above ``score_thr``), predicted once per image by :meth:`DetectorLoss.\
clean_detections` and cached, optionally relabelled. An image with no clean
detection above the threshold gets the loss against an empty ground truth
(every candidate a negative), as TOG's YOLOv3 and SSD feed an empty label
map; TOG's Faster R-CNN switches to its fabrication loss there instead.
Instance masks, where the loss needs them, are the filled boxes.
"""
import sys
from contextlib import contextmanager
from typing import Dict, List, Optional, Sequence

import torch
from torch import Tensor

from mmdag.attacks.det_pgd import TERMS
from mmdag.errors import MMDagError
from .batching import canvas_of
from .common import gt_in_input_frame

__all__ = ['DetectorLoss', 'loss_mode', 'sum_losses', 'LOSS_TERMS', 'GT_SOURCES', 'TOG_SCORE_THR',
           'tog_model_kind']

#: which of a detector's loss terms DetPGD ascends: ``'all'`` (every term
#: whose key has ``loss``, as mmengine's ``parse_losses`` sums them) or
#: ``'cls'`` (the classification and objectness terms only, as ARES does:
#: keys with ``cls``, ``conf`` or ``obj``)
LOSS_TERMS = TERMS
_CLS_KEYS = ('cls', 'conf', 'obj')

#: where :meth:`DetectorLoss.detector_loss` takes the ground truth from: the
#: annotations (DetPGD) or the model's own clean detections (TOG)
GT_SOURCES = ('annotations', 'clean')

#: TOG's default confidence threshold per model file of the authors' code:
#: ``models/frcnn.py`` (0.70), ``models/ssd.py`` (0.50), ``models/yolov3.py``
#: (0.20); :func:`tog_model_kind` says which file a detector maps to
TOG_SCORE_THR = {'frcnn': 0.70, 'ssd': 0.50, 'yolov3': 0.20}


def tog_model_kind(model) -> str:
    """Which of TOG's model files a detector maps to: ``'frcnn'`` for a
    detector with a RoI head (two-stage), ``'ssd'`` for a softmax head with
    a background or no-object class (SSD, DETR), ``'yolov3'`` for a head
    that scores each class by a sigmoid (YOLOv3, and RetinaNet, FCOS, ...,
    Deformable DETR and DINO, which TOG has no model of: their scores are
    sigmoids, like YOLOv3's)."""
    if getattr(model, 'roi_head', None) is not None:
        return 'frcnn'
    head = getattr(model, 'bbox_head', None)
    sigmoid = getattr(head, 'use_sigmoid_cls', None)
    if sigmoid is None:
        sigmoid = getattr(getattr(head, 'loss_cls', None), 'use_sigmoid', True)
    return 'yolov3' if sigmoid else 'ssd'


def _stays_eval(module) -> bool:
    """Layers whose training mode updates state or draws at random."""
    from torch.nn.modules.batchnorm import _BatchNorm
    from torch.nn.modules.dropout import _DropoutNd
    from torch.nn.modules.instancenorm import _InstanceNorm
    if isinstance(module, (_BatchNorm, _InstanceNorm, _DropoutNd, torch.nn.MultiheadAttention)):
        return True
    name = type(module).__name__.lower()
    return 'norm' in name or 'drop' in name


def same_values(a: Tensor, b: Tensor) -> bool:
    """Bit for bit, NaN equal to NaN (a random-weight build may leave a
    parameter uninitialised, e.g. DDQ's ``level_embed``)."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.is_floating_point():
        return bool(((a == b) | (a.isnan() & b.isnan())).all())
    return torch.equal(a, b)


@contextmanager
def loss_mode(model):
    """Every module of ``model`` in training mode but normalisation, dropout
    and attention-with-dropout layers (module docstring); the flags are
    restored on exit, and so is every buffer (some losses keep running
    statistics of their own: GHM-C's ``acc_sum``, the seesaw loss's
    ``cum_samples``) and every module's set of children (DDQ's training
    forward attaches its head's branches to its decoder)."""
    saved = [(m, m.training) for m in model.modules()]
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    # DDQ's training forward attaches its head's branches to its decoder
    children = [(m, dict(m._modules)) for m, _ in saved]
    try:
        for m, _ in saved:
            m.training = not _stays_eval(m)
        yield
    finally:
        for m, flag in saved:
            m.training = flag
        for m, kids in children:
            if m._modules.keys() != kids.keys():
                m._modules.clear()
                m._modules.update(kids)
        # only those the loss changed: writing a buffer the graph saved (a
        # BatchNorm's running statistics, read in eval mode) would break the
        # backward that follows
        with torch.no_grad():
            for b, value in buffers:
                if not same_values(b, value):
                    b.copy_(value)


#: the training epoch a loss reads from the message hub when the test loop
#: set none (TOOD switches its assigner after ``initial_epoch``): past any
#: warm-up, the loss the trained model ended its training on
LAST_EPOCH = 1_000_000


@contextmanager
def _training_epoch():
    """The message hub's ``epoch`` set to :data:`LAST_EPOCH` inside when the
    run has none (a test run), restored on exit."""
    from mmengine.logging import MessageHub
    info = MessageHub.get_current_instance().runtime_info
    had = 'epoch' in info and info['epoch'] is not None
    if not had:
        info['epoch'] = LAST_EPOCH
    try:
        yield
    finally:
        if not had:
            info.pop('epoch', None)


def _needs_semantic_map(model) -> bool:
    """Whether the model's loss takes a ground-truth semantic map: HTC's and
    SCNet's semantic branch, Panoptic FPN's semantic head."""
    roi_head = getattr(model, 'roi_head', None)
    return bool(getattr(roi_head, 'with_semantic', False)
                or getattr(model, 'with_semantic_head', False))


@contextmanager
def _single_process():
    """``torch.distributed.is_initialized()`` reads False inside: mmdet's
    ``reduce_mean`` of the loss normalisers stays local to the image."""
    import torch.distributed as dist
    stock = dist.is_initialized
    dist.is_initialized = lambda: False
    try:
        yield
    finally:
        dist.is_initialized = stock


def sum_losses(losses: dict, terms: str = 'all') -> Tensor:
    """The total of a detector's loss dict as mmengine's ``parse_losses``
    makes it (each value's mean, lists summed, keys with ``loss``), over the
    chosen ``terms`` (:data:`LOSS_TERMS`)."""
    if terms not in LOSS_TERMS:
        raise ValueError(f'terms must be one of {LOSS_TERMS}, got {terms!r}')
    total = None
    for key, value in losses.items():
        if 'loss' not in key:
            continue
        if terms == 'cls' and not any(k in key for k in _CLS_KEYS):
            continue
        parts = value if isinstance(value, (list, tuple)) else [value]
        for v in parts:
            total = v.mean() if total is None else total + v.mean()
    if total is None:
        raise MMDagError(f'the detector returned no {terms!r} loss term among '
                         f'{sorted(losses)}: choose terms from {LOSS_TERMS}')
    return total


def _needs_masks(model) -> bool:
    """Whether the model's loss takes instance masks: a mask branch (Mask
    R-CNN, HTC...), an instance segmentor (SOLO, CondInst, YOLACT...), a
    MaskFormer, or a head for instances (RTMDet-Ins)."""
    from mmdet.models.detectors import MaskFormer
    from mmdet.models.detectors.single_stage_instance_seg import SingleStageInstanceSegmentor
    if getattr(model, 'with_mask', False):
        return True
    if isinstance(model, (SingleStageInstanceSegmentor, MaskFormer)):
        return True
    return 'Ins' in type(getattr(model, 'bbox_head', None)).__name__


@contextmanager
def _recording_nms(calls: list):
    """Inside, mmdet's ``multiclass_nms`` (where a loaded mmdet module bound
    it: the RoI box heads) also records, per call, the score matrix it was
    given and the flat index of each kept detection, from which
    :func:`_class_scores` finds the proposal behind each detection."""
    from mmdet.models import layers
    stock = layers.multiclass_nms

    def recording(multi_bboxes, multi_scores, *args, return_inds=False, **kwargs):
        dets, labels, inds = stock(multi_bboxes, multi_scores, *args, return_inds=True, **kwargs)
        calls.append((multi_scores.detach(), inds))
        return (dets, labels, inds) if return_inds else (dets, labels)

    bound = [m for name, m in list(sys.modules.items())
             if name.startswith('mmdet.') and getattr(m, 'multiclass_nms', None) is stock]
    for m in bound:
        m.multiclass_nms = recording
    try:
        yield
    finally:
        for m in bound:
            m.multiclass_nms = stock


def _class_scores(calls: list, labels: Tensor, kind: str) -> Optional[Tensor]:
    """The class scores ``[n, C]`` of the ``n`` detections of one image of a
    two-stage detector (``kind='frcnn'``), from :func:`_recording_nms`'s
    record: the log of the RoI head's softmax probabilities of the proposal
    each detection comes from, in float64, background left out as TOG's
    ``frcnn.py`` leaves it out (the log-softmax differs from the logits by a
    constant per row: the same ranking and the same softmax, all TOG's
    ``ml`` and ``ll`` read). None for other detectors (their NMS keeps no
    track of the candidate: mmdet's dense heads, YOLOv3's included, and
    query heads) and where the record does not tell (no single call, or
    detections that are not its kept entries)."""
    if kind != 'frcnn' or len(calls) != 1:
        return None
    scores, inds = calls[0]
    num_classes = scores.shape[1] - 1
    if len(inds) != len(labels) or not torch.equal((inds % num_classes).cpu(), labels.cpu()):
        return None
    probs = scores[inds // num_classes, :num_classes].double()
    return probs.clamp_min(1e-300).log()


class DetectorLoss:
    """The detector's own loss, per image (module docstring): a mix-in of the
    detection target sets (they hold ``model``, ``samples`` and
    ``gt_frame``)."""

    model = None
    samples: list = []
    gt_frame = 'original'

    def _loss_sample(self, i: int, image: Tensor):
        """Image ``i``'s data sample with its ground truth in the input frame
        (made once per image)."""
        cache = self.__dict__.setdefault('_loss_samples', {})
        if i not in cache:
            sample = self.samples[i]
            canvas = canvas_of(self.model, image.shape)
            meta = dict(sample.metainfo, batch_input_shape=canvas)
            masks = _needs_masks(self.model)
            gt = gt_in_input_frame(sample, self.gt_frame, image.device, meta=meta, masks=masks)
            if gt is None:
                raise MMDagError('DetPGD needs the ground truth of every image: the test '
                                 "pipeline must load annotations (LoadAnnotations) and pack "
                                 'gt_instances')
            self._check_semantic_map(sample)
            out = sample.clone()
            out.gt_instances = gt
            if 'ignored_instances' in sample:
                ignored = type(sample)(metainfo=sample.metainfo)
                ignored.gt_instances = sample.ignored_instances
                ign = gt_in_input_frame(ignored, self.gt_frame, image.device)
                if ign is not None:
                    out.ignored_instances = ign
            for key in ('pred_instances', 'pred_panoptic_seg', 'pred_sem_seg'):
                if key in out:
                    delattr(out, key)
            cache[i] = out
        return cache[i]

    def _check_semantic_map(self, sample) -> None:
        if _needs_semantic_map(self.model) and 'gt_sem_seg' not in sample:
            raise MMDagError(
                f"the loss of {type(self.model).__name__} needs each image's ground-truth "
                'semantic map (its semantic head has a loss): load it in the test '
                'pipeline (LoadAnnotations with_seg=True, before Resize) or attack with '
                'togvanishing')

    def tog_score_thr(self) -> float:
        """TOG's default confidence threshold for this detector
        (:data:`TOG_SCORE_THR` of :func:`tog_model_kind`)."""
        return TOG_SCORE_THR[tog_model_kind(self.model)]

    def clean_detections(self, images: Sequence[Tensor], indices: Sequence[int],
                         score_thr: float) -> List[Dict[str, Optional[Tensor]]]:
        """The model's detections of the clean images, one dict per image:
        ``bboxes [n, 4]`` in the input frame, ``labels [n]``, ``scores [n]``
        (those above ``score_thr``, in the order ``predict`` gives them) and
        ``class_scores [n, C]`` (:func:`_class_scores`; None for a head whose
        candidates the record does not recover). Predicted once per image
        (its own canvas, no gradient) and cached: later calls for the same
        image return the first prediction whatever images they pass.

        Args:
            images (Sequence[Tensor]): the clean images ``[3, H, W]``, 0..255.
            indices (Sequence[int]): their positions in the batch.
            score_thr (float): keep the detections whose score is above it
                (the model's own test threshold still applies first).
        """
        cache = self.__dict__.setdefault('_clean_dets', {})
        model = self.model
        kind = tog_model_kind(model)
        out = []
        for x, i in zip(images, indices):
            if i not in cache:
                sample = self.samples[i].clone()
                for key in ('pred_instances', 'pred_panoptic_seg', 'pred_sem_seg'):
                    if key in sample:
                        delattr(sample, key)
                calls: list = []
                with torch.no_grad(), _recording_nms(calls):
                    data = model.data_preprocessor(dict(inputs=[x.detach().float()],
                                                        data_samples=[sample]), False)
                    pred = model.predict(data['inputs'], data['data_samples'],
                                         rescale=False)[0].pred_instances
                labels = pred.labels.long()
                boxes = getattr(pred.bboxes, 'tensor', pred.bboxes).float().reshape(-1, 4)
                cache[i] = dict(bboxes=boxes, labels=labels, scores=pred.scores.float(),
                                class_scores=_class_scores(calls, labels, kind))
            dets = cache[i]
            keep = dets['scores'] > score_thr
            out.append({k: None if v is None else v[keep] for k, v in dets.items()})
        return out

    def _clean_sample(self, i: int, image: Tensor, score_thr: float,
                      labels: Optional[Tensor]):
        """Image ``i``'s data sample whose ground truth is its clean
        detections above ``score_thr`` (:meth:`clean_detections`, which must
        have seen the clean image), with ``labels`` instead of theirs when
        given."""
        from mmengine.structures import InstanceData
        if i not in self.__dict__.get('_clean_dets', {}):
            raise MMDagError(f'image {i} has no clean detections yet: call clean_detections on '
                             "the clean images before detector_loss(gt='clean')")
        dets = self.clean_detections([image], [i], score_thr)[0]
        if labels is not None:
            labels = torch.as_tensor(labels, device=dets['labels'].device).long()
            if labels.shape != dets['labels'].shape:
                raise ValueError(f'image {i}: {labels.numel()} labels for '
                                 f"{len(dets['labels'])} clean detections")
        key = (i, float(score_thr), None if labels is None else tuple(labels.tolist()))
        cache = self.__dict__.setdefault('_clean_samples', {})
        if key not in cache:
            sample = self.samples[i]
            self._check_semantic_map(sample)
            pseudo = type(sample)(metainfo=sample.metainfo)
            pseudo.gt_instances = InstanceData(
                bboxes=dets['bboxes'], labels=dets['labels'] if labels is None else labels)
            canvas = canvas_of(self.model, image.shape)
            meta = dict(sample.metainfo, batch_input_shape=canvas)
            out = sample.clone()
            out.gt_instances = gt_in_input_frame(pseudo, 'input', image.device, meta=meta,
                                                 masks=_needs_masks(self.model))
            for name in ('ignored_instances', 'pred_instances', 'pred_panoptic_seg',
                         'pred_sem_seg'):
                if name in out:
                    delattr(out, name)
            cache[key] = out
        return cache[key]

    def detector_loss(self, images: Sequence[Tensor], indices: Sequence[int],
                      seeds: Sequence[int], terms: str = 'all', gt: str = 'annotations',
                      score_thr: Optional[float] = None,
                      labels: Optional[Sequence[Optional[Tensor]]] = None) -> List[Tensor]:
        """The detector's loss (:func:`sum_losses` of ``terms``) of each image,
        differentiable with respect to it.

        Args:
            images (Sequence[Tensor]): the images ``[3, H, W]``, 0..255.
            indices (Sequence[int]): their positions in the batch.
            seeds (Sequence[int]): one per image, for the loss's own random
                draws.
            terms (str): :data:`LOSS_TERMS`. Defaults to ``'all'``.
            gt (str): the ground truth, one of :data:`GT_SOURCES`: the
                annotations, or the clean detections above ``score_thr``
                (module docstring). Defaults to ``'annotations'``.
            score_thr (float, optional): with ``gt='clean'``, the detections'
                score threshold. Defaults to TOG's (:meth:`tog_score_thr`).
            labels (Sequence[Tensor], optional): with ``gt='clean'``, per
                image, the class of each clean detection (None: its own).
        """
        if gt not in GT_SOURCES:
            raise ValueError(f'gt must be one of {GT_SOURCES}, got {gt!r}')
        if gt == 'annotations' and (score_thr is not None or labels is not None):
            raise ValueError("score_thr and labels apply to gt='clean' only")
        if gt == 'clean' and score_thr is None:
            score_thr = self.tog_score_thr()
        model = self.model
        out = []
        for k, (x, i, seed) in enumerate(zip(images, indices, seeds)):
            if gt == 'clean':
                sample = self._clean_sample(i, x, score_thr, None if labels is None else labels[k])
            else:
                sample = self._loss_sample(i, x)
            devices = [x.device] if x.is_cuda else []
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(int(seed) % (2 ** 63))
                data = model.data_preprocessor(dict(inputs=[x], data_samples=[sample]), False)
                with loss_mode(model), _single_process(), _training_epoch():
                    try:
                        losses = model.loss(data['inputs'], data['data_samples'])
                    except ImportError as e:   # a loss's own dependency (PAA: sklearn)
                        raise MMDagError(f"{type(model).__name__}'s loss needs a package that "
                                         f'is not installed ({e}): install it, or attack with '
                                         'togvanishing') from e
            out.append(sum_losses(losses, terms))
        return out
