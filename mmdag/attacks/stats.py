"""Measures of a perturbation and the PERM control of the paper."""
from typing import Optional, Tuple

import torch
from torch import Tensor


def perturbation_stats(r: Tensor) -> dict:
    """Perceptibility and L-inf of one perturbation ``r`` ``[C, H, W]`` (0..255).

    ``p = sqrt(1/K * sum_k ||r_k||_2^2)`` with ``r_k`` the colour vector of pixel
    ``k`` on the [0, 1] scale and ``K = H * W`` (PAPER.md, "Measures"). For an
    image inside padding, pass the image's part (:func:`crop`): ``K`` counts
    the image's pixels, not the padding's.
    """
    if r.numel() == 0:
        return dict(p=0.0, linf=0.0)
    r = r.detach().double() / 255.0
    k = r.shape[-1] * r.shape[-2]
    p = torch.sqrt((r ** 2).sum() / k).item()
    return dict(p=p, linf=r.abs().max().item() * 255.0)


def permute_perturbation(r: Tensor, generator: torch.Generator,
                         region: Optional[Tuple[int, int]] = None) -> Tensor:
    """PERM: ``r`` with its pixel positions randomly permuted.

    Each pixel keeps its colour vector (so the multiset of values, ``p`` and
    L-inf are unchanged); only the spatial structure is destroyed. With a
    ``region`` ``(h, w)`` (the image inside padding that the test pipeline
    added), only the pixels of ``r[:, :h, :w]`` are permuted among themselves
    and the rest stays as it is (zero), so no perturbation moves into the
    padding or out of it. The whole image is the same draw as no region.
    """
    if region is not None and tuple(region) != tuple(r.shape[-2:]):
        h, w = region
        out = r.clone()
        out[:, :h, :w] = permute_perturbation(r[:, :h, :w], generator)
        return out
    c = r.shape[0]
    flat = r.reshape(c, -1)
    idx = torch.randperm(flat.shape[1], generator=generator).to(r.device)
    return flat[:, idx].reshape(r.shape)


def crop(r: Tensor, region: Optional[Tuple[int, int]]) -> Tensor:
    """``r[..., :h, :w]`` for a region ``(h, w)``; ``r`` itself for None."""
    if region is None:
        return r
    return r[..., :region[0], :region[1]]


def region_mask(x: Tensor, region: Optional[Tuple[int, int]]) -> Optional[Tensor]:
    """1 inside the region ``(h, w)`` of an image ``[C, H, W]`` and 0 in the
    padding around it; None when the region is the whole image."""
    if region is None or tuple(region) == tuple(x.shape[-2:]):
        return None
    m = torch.zeros(x.shape[-2:], dtype=x.dtype, device=x.device)
    m[:region[0], :region[1]] = 1
    return m
