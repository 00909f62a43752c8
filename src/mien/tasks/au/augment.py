"""Batch augmentation of AU training images (tensor ops on (B, 3, H, W) float RGB [0, 1], any device).

weak = random horizontal flip + translation (±1/8, reflect padding; labels of unmerged left/right AU columns are
swapped for flipped images with :func:`flip_labels` — FaceFlow did not); strong = weak + colour jitter, Gaussian
noise and a random erased square (cutout).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn import functional as F

__all__ = ["flip_labels", "strong_augment", "weak_augment"]


def weak_augment(x: torch.Tensor, flip: bool = True, translate: float = 0.125,
                 generator: torch.Generator | None = None, return_flips: bool = False):
    """Random horizontal flip (p = 0.5) and translation up to ``translate``·side (reflect padding), per image.

    Returns the (B, 3, H, W) batch, and with ``return_flips`` also the (B,) bool flip mask (labels of sided AUs
    must be swapped for flipped images: :func:`flip_labels`).
    """
    b, _, h, w = x.shape
    dev = x.device
    f = torch.zeros(b, dtype=torch.bool)
    if flip:
        f = torch.rand(b, device="cpu", generator=generator) < 0.5
        x = torch.where(f.to(dev).view(b, 1, 1, 1), x.flip(-1), x)
    ph, pw = int(round(h * translate)), int(round(w * translate))
    if ph or pw:
        pad = F.pad(x, (pw, pw, ph, ph), mode="reflect")
        oy = torch.randint(0, 2 * ph + 1, (b,), generator=generator)
        ox = torch.randint(0, 2 * pw + 1, (b,), generator=generator)
        x = torch.stack([pad[i, :, oy[i]:oy[i] + h, ox[i]:ox[i] + w] for i in range(b)])
    return (x, f) if return_flips else x


def flip_labels(batch: dict, flips: torch.Tensor, perm: Sequence[int] | None) -> dict:
    """Swap sided label columns (``occ``, ``occ_mask``, ``int``, ``int_mask``) of the rows in ``flips``."""
    if perm is None or not bool(flips.any()):
        return batch
    out = dict(batch)
    rows = flips.to(batch["occ"].device).view(-1, 1)
    for k in ("occ", "occ_mask", "int", "int_mask"):
        if k in batch:
            out[k] = torch.where(rows, batch[k][:, list(perm)], batch[k])
    return out


def strong_augment(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Photometric + occlusion augmentation of an already weakly augmented batch (same geometry as its input):
    brightness ×[0.6, 1.4], contrast ×[0.6, 1.4], saturation ×[0, 1.5], Gaussian noise σ ≤ 0.05, and one erased
    square (side ¼–½ of the image) per image. Output clamped to [0, 1]."""
    b, _, h, w = x.shape

    def u(lo, hi):
        return (torch.rand(b, 1, 1, 1, generator=generator) * (hi - lo) + lo).to(x)

    x = x * u(0.6, 1.4)
    mean = x.mean((1, 2, 3), keepdim=True)
    x = (x - mean) * u(0.6, 1.4) + mean
    gray = x.mean(1, keepdim=True)
    x = (x - gray) * u(0.0, 1.5) + gray
    x = x + torch.randn(x.shape, generator=generator).to(x) * u(0.0, 0.05)
    side = torch.randint(h // 4, max(h // 2, h // 4 + 1), (b,), generator=generator)
    cy = torch.randint(0, h, (b,), generator=generator)
    cx = torch.randint(0, w, (b,), generator=generator)
    yy = torch.arange(h).view(1, h, 1)
    xx = torch.arange(w).view(1, 1, w)
    half = (side // 2).view(b, 1, 1)
    box = ((yy - cy.view(b, 1, 1)).abs() <= half) & ((xx - cx.view(b, 1, 1)).abs() <= half)
    x = x.masked_fill(box[:, None].to(x.device), 0.5)
    return x.clamp(0, 1)

