"""Volumetric warping: one identity grid, rigid head motion composed with a learned signed 3-D flow.

``grid_sample`` conventions (stated once here, tested in ``tests/test_reenact_models.py``):

* coordinates are normalised, the last grid axis is ordered (x, y, z) ↔ (W, H, D), each in [-1, 1];
* ``align_corners=False``: -1 and 1 are the outer *edges* of the volume, voxel i's centre is (2i + 1)/N − 1
  (:func:`identity_grid`), so sampling the identity grid returns the volume unchanged;
* outside the volume is empty (``padding_mode="zeros"``).

Unlike the seed (notes/03, §3.7), normalised coordinates are never re-normalised as if they were pixels, the
identity is added once, and the flow is signed (zero-initialised ``tanh`` scaled by ``max_flow``).

Source→canonical samples the source at ``R_s · x_c + t_s + Δ_s(x_c)``; canonical→driver samples the canonical
volume at ``R_dᵀ (x_d − t_d) + Δ_d(x_d)`` (motion convention of :mod:`mien.models.reenact.motion`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mien.models.reenact.blocks import ResBlock3d

ALIGN_CORNERS = False
"""``align_corners`` of every ``grid_sample`` / ``interpolate`` on volumes in this family."""

__all__ = ["ALIGN_CORNERS", "WarpGenerator", "identity_grid", "rigid_grid", "warp_volume"]


def identity_grid(d: int, h: int, w: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """(D, H, W, 3) normalised (x, y, z) coordinates of the voxel centres (``align_corners=False``)."""
    def axis(n):
        return (torch.arange(n, device=device, dtype=dtype) * 2 + 1) / n - 1

    z, y, x = torch.meshgrid(axis(d), axis(h), axis(w), indexing="ij")
    return torch.stack([x, y, z], -1)


def rigid_grid(shape: tuple[int, int, int], rotation: torch.Tensor, translation: torch.Tensor,
               inverse: bool) -> torch.Tensor:
    """Sampling grid (B, D, H, W, 3) of a rigid motion on a (D, H, W) volume.

    Args:
        rotation: (B, 3, 3); translation: (B, 3) normalised units.
        inverse: False: ``g(x) = R x + t`` (source → canonical: where the canonical point x sits in the source);
            True: ``g(x) = Rᵀ (x − t)`` (canonical → driver: which canonical point lands on x).
    """
    g = identity_grid(*shape, device=rotation.device, dtype=rotation.dtype)  # (D, H, W, 3)
    flat = g.reshape(1, -1, 3)
    if inverse:  # row vectors: (x − t) R  ==  (Rᵀ (x − t))ᵀ
        out = (flat - translation[:, None]) @ rotation
    else:
        out = flat @ rotation.transpose(1, 2) + translation[:, None]
    return out.reshape(rotation.shape[0], *shape, 3)


def warp_volume(volume: torch.Tensor, rotation: torch.Tensor, translation: torch.Tensor,
                flow: torch.Tensor | None, inverse: bool) -> torch.Tensor:
    """Warp a (B, C, D, H, W) volume by a rigid motion plus a flow residual (see the module doc).

    Args:
        flow: (B, 3, D', H', W') signed offsets in normalised (x, y, z) units, resized (trilinear) to the
            volume's (D, H, W) when it differs; None: rigid only.

    Returns:
        (B, C, D, H, W), the same dtype as ``volume``.
    """
    shape = tuple(volume.shape[-3:])
    grid = rigid_grid(shape, rotation.float(), translation.float(), inverse)
    if flow is not None:
        if tuple(flow.shape[-3:]) != shape:
            flow = F.interpolate(flow.float(), size=shape, mode="trilinear", align_corners=ALIGN_CORNERS)
        grid = grid + flow.float().permute(0, 2, 3, 4, 1)
    return F.grid_sample(volume, grid.to(volume.dtype), mode="bilinear", padding_mode="zeros",
                         align_corners=ALIGN_CORNERS)


class WarpGenerator(nn.Module):
    """Learned 3-D flow residual Δ(z, e) → (B, 3, D, H, W) (MegaPortraits' W_s→c / W_c→d, made signed).

    (z, e) → linear → a (width/4, D/4, H/4, W/4) seed volume → [ResBlock3d, ×2 upsample] × 2 → conv → 3 channels
    → ``max_flow · tanh``. The last conv starts at zero, so an untrained generator is the rigid warp alone.

    Args:
        in_dim: dim of z + dim of e; shape: (D, H, W) of the flow (the volume's); width: channels;
        max_flow: largest offset in normalised units.
    """

    def __init__(self, in_dim: int, shape: tuple[int, int, int], width: int = 32, max_flow: float = 0.5):
        super().__init__()
        d, h, w = shape
        if d % 4 or h % 4 or w % 4:
            raise ValueError(f"flow shape must be divisible by 4, got {shape}")
        seed = max(4, width // 4)
        self.seed_shape = (seed, d // 4, h // 4, w // 4)
        self.fc = nn.Linear(in_dim, seed * (d // 4) * (h // 4) * (w // 4))
        self.b1, self.b2 = ResBlock3d(seed, width), ResBlock3d(width, width // 2)
        self.out = nn.Conv3d(width // 2, 3, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.max_flow = float(max_flow)

    def forward(self, z: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        x = self.fc(torch.cat([z, e], 1)).view(z.shape[0], *self.seed_shape)
        x = F.interpolate(self.b1(x), scale_factor=2, mode="trilinear", align_corners=ALIGN_CORNERS)
        x = F.interpolate(self.b2(x), scale_factor=2, mode="trilinear", align_corners=ALIGN_CORNERS)
        return self.max_flow * torch.tanh(self.out(F.silu(x)))
