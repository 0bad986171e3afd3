"""Saved perturbations of an attack: one file per image, for transfer studies.

A perturbation ``r`` lives in the frame of the network input the test
pipeline produced (after ``Resize``, before normalisation), 0..255 scale,
channel order of the loader. It is stored as ``<dir>/<image name>.npz``:
``r`` as float16 ``[3, H, W]`` (exact for integer-valued perturbations, i.e.
``quantize=True``, otherwise within 0.125), and its frame: ``img_path``,
``input_shape`` (``r``'s ``[C, H, W]``), ``img_shape`` (the resized image
inside the padded input), ``ori_shape``, ``channel_order`` of the loaded
image and the source pipeline's ``scale`` (its ``Resize``). Files are written
atomically (:func:`mmdag.fileio.write_atomic`), so an interrupted run leaves
no half-written file under an image's name.

Loading checks the frame against the image it is added to. A different
original size means another image under the same name: always refused. A
different input frame (another pipeline scale or padding) is refused unless
resizing is asked for (bilinear). A different channel order is converted
(reversing the channels is exact).
"""
import io
import os.path as osp
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from mmdag.contract import image_name
from mmdag.errors import MMDagError
from mmdag.fileio import write_atomic

#: File stem of a sample's perturbation: the image's name (:mod:`mmdag.contract`).
perturbation_name = image_name


def save_perturbation(directory: str, sample, r: Tensor, index: int = 0,
                      frame: Optional[dict] = None) -> str:
    """Write ``r`` of ``sample`` to ``<directory>/<name>.npz``; return the path.

    ``frame`` adds ``channel_order`` and ``scale`` (see the module)."""
    meta = sample.metainfo if hasattr(sample, 'metainfo') else {}
    frame = dict(frame or {})
    path = osp.join(directory, perturbation_name(sample, index) + '.npz')
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer, r=r.detach().cpu().to(torch.float16).numpy(),
        img_path=str(meta.get('img_path', '')),
        input_shape=np.asarray(tuple(r.shape)),
        img_shape=np.asarray(meta.get('img_shape', r.shape[-2:])),
        ori_shape=np.asarray(meta.get('ori_shape', r.shape[-2:])),
        channel_order=str(frame.get('channel_order', 'bgr')),
        scale=str(frame.get('scale', '')))
    write_atomic(path, buffer.getvalue())
    return path


def perturbation_path(directory: str, sample, index: int = 0) -> str:
    return osp.join(directory, perturbation_name(sample, index) + '.npz')


def load_perturbation(directory: str, sample, shape, index: int = 0,
                      device: Optional[torch.device] = None, resize: bool = False,
                      channel_order: str = 'bgr') -> Tensor:
    """The saved perturbation of ``sample``, float ``[C, H, W]``, checked
    against its frame (see the module); resized (bilinear) to ``shape`` only
    when ``resize``."""
    name = perturbation_name(sample, index)
    path = perturbation_path(directory, sample, index)
    if not osp.isfile(path):
        raise MMDagError(
            f'no saved perturbation for image {name} in {directory}: run the attack with '
            'save_perturbations=True on the same test set first, or check the directory')
    meta = sample.metainfo if hasattr(sample, 'metainfo') else {}
    try:
        with np.load(path) as f:
            r = torch.from_numpy(f['r'].astype(np.float32))
            saved = {k: f[k] for k in f.files if k != 'r'}
    except Exception as e:  # noqa: BLE001  (a corrupt or foreign file: one line)
        raise MMDagError(f'cannot read saved perturbation {path} ({type(e).__name__}: {e}): '
                         'save the perturbations again') from None
    ori = meta.get('ori_shape')
    if 'ori_shape' in saved and ori is not None and \
            tuple(int(v) for v in saved['ori_shape'])[:2] != tuple(ori)[:2]:
        raise MMDagError(
            f'saved perturbation {path} was made for an image of size '
            f'{tuple(int(v) for v in saved["ori_shape"])[:2]}, but image {name} here is '
            f'{tuple(ori)[:2]}: the directory holds another dataset\'s perturbations')
    c, h, w = shape
    if r.shape[0] != c:
        raise MMDagError(f'saved perturbation {path} has {r.shape[0]} channels, the input has {c}')
    source_order = str(saved['channel_order']) if 'channel_order' in saved else None
    if source_order and source_order != channel_order:
        r = r.flip(0)   # bgr <-> rgb: the same perturbation of the same image
    if tuple(r.shape[-2:]) != (h, w):
        if not resize:
            scale = str(saved['scale']) if 'scale' in saved else ''
            raise MMDagError(
                f'saved perturbation {path} is {r.shape[-2]}x{r.shape[-1]}'
                f'{f" (source pipeline scale {scale})" if scale else ""}, this model\'s input '
                f'for image {name} is {h}x{w}: pass --resize-perturbations '
                '(resize_perturbations=True) to resize it, or use the same test pipeline')
        r = F.interpolate(r[None], size=(h, w), mode='bilinear', align_corners=False)[0]
    return r.to(device) if device is not None else r


def image_names(dataset) -> list:
    """The perturbation file stems of every test image (see
    :func:`mmdag.engine.perturbations.perturbation_name`)."""
    names = []
    for i in range(len(dataset)):
        info = dataset.get_data_info(i)
        path = info.get('img_path')
        names.append(osp.splitext(osp.basename(str(path)))[0] if path
                     else f"sample_{info.get('sample_idx', i)}")
    return names
