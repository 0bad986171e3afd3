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
"""
from contextlib import contextmanager
from typing import List, Sequence

import torch
from torch import Tensor

from mmdag.attacks.det_pgd import TERMS
from mmdag.errors import MMDagError
from .batching import canvas_of
from .common import gt_in_input_frame

__all__ = ['DetectorLoss', 'loss_mode', 'sum_losses', 'LOSS_TERMS']

#: which of a detector's loss terms DetPGD ascends: ``'all'`` (every term
#: whose key has ``loss``, as mmengine's ``parse_losses`` sums them) or
#: ``'cls'`` (the classification and objectness terms only, as ARES does:
#: keys with ``cls``, ``conf`` or ``obj``)
LOSS_TERMS = TERMS
_CLS_KEYS = ('cls', 'conf', 'obj')


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
            if _needs_semantic_map(self.model) and 'gt_sem_seg' not in sample:
                raise MMDagError(
                    f"DetPGD on {type(self.model).__name__} needs each image's ground-truth "
                    'semantic map (its semantic head has a loss): load it in the test '
                    'pipeline (LoadAnnotations with_seg=True, before Resize) or attack with '
                    'togvanishing')
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

    def detector_loss(self, images: Sequence[Tensor], indices: Sequence[int],
                      seeds: Sequence[int], terms: str = 'all') -> List[Tensor]:
        """The detector's loss (:func:`sum_losses` of ``terms``) of each image,
        differentiable with respect to it; ``seeds``: one per image, for the
        loss's own random draws."""
        model = self.model
        out = []
        for x, i, seed in zip(images, indices, seeds):
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
