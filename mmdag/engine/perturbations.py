"""Saved DAG perturbations: one file per image, for transfer studies.

A perturbation ``r`` lives in the frame of the network input the test
pipeline produced (after ``Resize``, before normalisation), 0..255 scale,
channel order of the loader. It is stored as ``<dir>/<image name>.npz``
(``r`` as float16 ``[3, H, W]``: exact for integer-valued perturbations, i.e.
``quantize=True``, otherwise within 0.125; plus ``img_path``, ``img_shape``,
``ori_shape``). Files are written atomically (temporary file, then rename),
so an interrupted run leaves no half-written file.
"""
import os
import os.path as osp
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from mmdag.errors import MMDagError


def perturbation_name(sample, index: int = 0) -> str:
    """File stem of a sample: its image's base name (unique in a VOC split)."""
    meta = sample.metainfo if hasattr(sample, 'metainfo') else {}
    path = meta.get('img_path')
    if path:
        return osp.splitext(osp.basename(str(path)))[0]
    return f"sample_{meta.get('sample_idx', index)}"


def save_perturbation(directory: str, sample, r: Tensor, index: int = 0) -> str:
    """Write ``r`` of ``sample`` to ``<directory>/<name>.npz``; return the path."""
    os.makedirs(directory, exist_ok=True)
    meta = sample.metainfo if hasattr(sample, 'metainfo') else {}
    path = osp.join(directory, perturbation_name(sample, index) + '.npz')
    tmp = path[:-4] + f'.tmp{os.getpid()}.npz'
    np.savez_compressed(
        tmp, r=r.detach().cpu().to(torch.float16).numpy(),
        img_path=str(meta.get('img_path', '')),
        img_shape=np.asarray(meta.get('img_shape', r.shape[-2:])),
        ori_shape=np.asarray(meta.get('ori_shape', r.shape[-2:])))
    os.replace(tmp, path)
    return path


def load_perturbation(directory: str, sample, shape, index: int = 0,
                      device: Optional[torch.device] = None) -> Tensor:
    """The saved perturbation of ``sample``, float ``[C, H, W]`` resized
    (bilinear) to ``shape`` when the source model's input frame differs."""
    name = perturbation_name(sample, index)
    path = osp.join(directory, name + '.npz')
    if not osp.isfile(path):
        raise MMDagError(
            f'no saved perturbation for image {name} in {directory}: run the attack with '
            'save_perturbations=True on the same test set first, or check the directory')
    with np.load(path) as f:
        r = torch.from_numpy(f['r'].astype(np.float32))
    c, h, w = shape
    if r.shape[0] != c:
        raise MMDagError(f'saved perturbation {path} has {r.shape[0]} channels, the input has {c}')
    if tuple(r.shape[-2:]) != (h, w):
        r = F.interpolate(r[None], size=(h, w), mode='bilinear', align_corners=False)[0]
    return r.to(device) if device is not None else r
