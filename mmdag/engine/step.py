"""The per-batch attack step: build a batch's targets and run an attack on it.

Below the hooks (:mod:`mmdag.engine.attack_hook` calls it once per test
batch) and re-exported by :mod:`mmdag.apis`, the public API.
"""
from contextlib import contextmanager
from typing import List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from mmdag.attacks import DAG, AttackResult, Replay, permute_perturbation
from mmdag.contract import image_seeds
from mmdag.errors import MMDagError
from mmdag.targets import build_targets


@contextmanager
def attack_mode(model, autocast: bool = False):
    """Eval mode, gradients on (the test loop runs under no_grad), and the
    parameters frozen so that only the input gets a gradient.

    Args:
        model: the unwrapped model.
        autocast (bool): run the forwards under mmengine's ``autocast``
            (float16 on CUDA, bfloat16 on the CPU). Defaults to False: the
            attack's logits and gradients are float32, whatever precision the
            predictions use.
    """
    from mmengine.runner.amp import autocast as mm_autocast
    was_training = model.training
    flags = [p.requires_grad for p in model.parameters()]
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        with torch.enable_grad(), mm_autocast(enabled=autocast):
            yield model
    finally:
        for p, f in zip(model.parameters(), flags):
            p.requires_grad_(f)
        model.train(was_training)


def content_region(sample, image: Tensor) -> Optional[Tuple[int, int]]:
    """``(h, w)`` of the image inside padding that the test pipeline added,
    or None when the loader's image is all image.

    A ``Pad`` in the test pipeline (RTMDet and YOLOX pad to 640x640 with grey)
    sets ``pad_shape`` and overwrites ``img_shape`` with the padded size; the
    image's own part is the original size times the ``Resize`` scale factor
    (mmdet/mmcv: ``scale_factor = (w_scale, h_scale)``), at the top left.
    """
    meta = sample.metainfo if hasattr(sample, 'metainfo') else {}
    h, w = image.shape[-2:]
    ori = meta.get('ori_shape')
    if meta.get('pad_shape') is None or ori is None:
        return None
    sf = meta.get('scale_factor') or (1.0, 1.0)
    if not isinstance(sf, (tuple, list)):
        sf = (float(sf), float(sf))
    rh, rw = int(round(ori[0] * sf[1])), int(round(ori[1] * sf[0]))
    region = (min(h, rh), min(w, rw))
    return None if region == (h, w) or min(region) <= 0 else region


def content_regions(samples: list, images: Sequence[Tensor]) -> List[Optional[Tuple[int, int]]]:
    return [content_region(s, x) for s, x in zip(samples, images)]


def _batch_images(model, data_batch: dict) -> List[Tensor]:
    """The batch's images as float tensors on the model's device, checked."""
    inputs = data_batch['inputs']
    if len(inputs) == 0:
        raise MMDagError('empty data batch: nothing to attack '
                         '(check the test dataset and ann_file)')
    device = next(model.parameters()).device
    images = [x.to(device).float() for x in inputs]
    for x in images:
        if x.dim() != 3 or x.shape[-1] == 0 or x.shape[-2] == 0:
            raise MMDagError('cannot attack an empty or malformed image of shape '
                             f'{tuple(x.shape)}: check the image files and the test pipeline')
    return images


def attack_batch(model, data_batch: dict, attack: Union[DAG, dict, None] = None,
                 targets_cfg: Optional[dict] = None,
                 autocast: bool = False, **attack_kwargs) -> Tuple[AttackResult, object]:
    """Run an attack (DAG by default) on one data batch of an mmseg/mmdet model.

    Args:
        model: a built segmentor or detector (unwrapped), with weights.
        data_batch (dict): ``dict(inputs=[uint8 [3,H,W], ...],
            data_samples=[...])`` as a test dataloader yields it.
        attack (DAG | dict, optional): the attack (any callable
            ``(images, targets, seeds, regions) -> AttackResult`` with
            ``seed`` and ``clip_range`` attributes) or its config dict
            (``type``, default ``'DAG'``, from
            ``mmdag.registry.ATTACKS``, and its arguments).
            Defaults to the paper's settings.
        targets_cfg (dict, optional): keyword arguments of the target adapter.
        autocast (bool): attack under mixed precision (see
            :func:`attack_mode`). Defaults to False (float32).
        **attack_kwargs: passed to the attack's call (``perturbations`` of
            a :class:`~mmdag.attacks.Replay`).

    Returns:
        tuple: the :class:`~mmdag.attacks.AttackResult` (adversarial images in the loader's
        frame and channel order, float 0..255, on the model's device) and the
        target set. An image's result does not depend on the other images of
        the batch (:mod:`mmdag.targets.batching`).
    """
    if attack is None or isinstance(attack, dict):
        from mmdag.attacks import build_attack
        attack = build_attack(attack or {})
    samples = data_batch['data_samples']
    images = _batch_images(model, data_batch)
    with attack_mode(model, autocast):
        targets = build_targets(model, images, samples, **(targets_cfg or {}))
        regions = content_regions(samples, images)
        kwargs = dict(regions=regions) if any(r is not None for r in regions) else {}
        result = attack(images, targets, seeds=image_seeds(samples, attack.seed), **kwargs,
                        **attack_kwargs)
    return result, targets


def perm_images(images: Sequence[Tensor], perturbations: Sequence[Tensor], data_samples: list,
                seed: int = 0, clip_range=(0.0, 255.0)) -> List[Tensor]:
    """PERM images: each clean image plus its perturbation with pixel
    positions permuted (seeded per image) inside the image's own region (not
    into padding, :func:`content_region`), clipped to the valid range; on the
    perturbation's device."""
    out = []
    for x, r, s, sample in zip(images, perturbations, image_seeds(data_samples, seed + 7919),
                               data_samples):
        q = permute_perturbation(r, torch.Generator().manual_seed(s), content_region(sample, r))
        out.append((x.to(q.device).float() + q).clamp(*clip_range))
    return out


def transfer_batch(model, data_batch: dict, perturbations: Sequence[Tensor],
                   targets_cfg: Optional[dict] = None,
                   clip_range=(0.0, 255.0), autocast: bool = False) -> Tuple[AttackResult, object]:
    """Apply given perturbations (e.g. DAG's on another model) to a batch:
    :func:`attack_batch` with the :class:`~mmdag.attacks.Replay` of a DAG
    with this ``clip_range`` (see there for the statistics)."""
    replay = Replay(DAG(clip_range=clip_range))
    return attack_batch(model, data_batch, replay, targets_cfg, autocast,
                        perturbations=perturbations)
