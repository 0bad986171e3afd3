"""Measures of a perturbation and the PERM control of the paper."""
import torch
from torch import Tensor


def perturbation_stats(r: Tensor) -> dict:
    """Perceptibility and L-inf of one perturbation ``r`` ``[C, H, W]`` (0..255).

    ``p = sqrt(1/K * sum_k ||r_k||_2^2)`` with ``r_k`` the colour vector of pixel
    ``k`` on the [0, 1] scale and ``K = H * W`` (PAPER.md, "Measures").
    """
    if r.numel() == 0:
        return dict(p=0.0, linf=0.0)
    r = r.detach().double() / 255.0
    k = r.shape[-1] * r.shape[-2]
    p = torch.sqrt((r ** 2).sum() / k).item()
    return dict(p=p, linf=r.abs().max().item() * 255.0)


def permute_perturbation(r: Tensor, generator: torch.Generator) -> Tensor:
    """PERM: ``r`` with its pixel positions randomly permuted.

    Each pixel keeps its colour vector (so the multiset of values, ``p`` and
    L-inf are unchanged); only the spatial structure is destroyed.
    """
    c = r.shape[0]
    flat = r.reshape(c, -1)
    idx = torch.randperm(flat.shape[1], generator=generator).to(r.device)
    return flat[:, idx].reshape(r.shape)
