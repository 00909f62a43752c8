"""Warp-guided reenactment: a learned refinement of the classical landmark-driven warp (a hybrid model).

The source crop is first warped by the piecewise-affine mesh warp of :mod:`mien.face.warp` — exactly the warp of
baseline (b), :class:`mien.pipelines.reenact.WarpReenactor` — which moves the source's 468 MediaPipe mesh points
to their target positions (relative motion: ``source + (driver − reference) · scale``). That warp is the
network's **motion prior**; :class:`WarpGuidedRefiner`, a small 2-D U-Net, sees the warped crop, the source
crop, the warp's displacement field and Gaussian heatmaps of the target eye, lip and brow points, and predicts
what a warp cannot make: mouth interior and teeth when the mouth opens, eyelids when the eyes close, shading
and seams. Its output is

    out = (1 − α) · warped + α · g + δ

with a blending mask α = clamp(a, 0, 1) (straight-through gradient, so it can leave 0), a generated image g = sigmoid(·) and a residual δ; the layers giving
``a`` and ``δ`` are zero-initialised, so an untrained refiner returns the warp **exactly** (its output *is*
baseline (b)) and training only has to learn the corrections. Motion comes from mien's landmarks alone; no
3-D volume, no learned flow (compare :class:`~mien.models.reenact.nets.ReenactModel`, MegaPortraits).

Evidence (``docs/benchmarks.md``): ``reenact-warpguided-tiny`` trained 275 steps (batch 8, 54 min on a shared
2-core CPU) is within noise of the warp on held-out subjects — nominally lower AKD and AED-AU, equal AED-expr,
lower emotion agreement — so it is not a default. Most of the warp's cross-reenactment AKD is the source/driver
face-shape difference that relative motion keeps (its target points are as far from the driver as its output), so
an image refinement has ~1 % of AKD to gain. The ``region_mask`` variant with the cross-identity expression term
(``warpguided_region_tiny``, 250 steps, checkpoint chosen on training-subject validation videos) is also level with
the warp on held-out AKD / AED, with lower CSIM and emotion agreement.

Related: the landmark/mesh-warp + refinement-network design of Averbuch-Elor et al., "Bringing Portraits to
Life", SIGGRAPH Asia 2017 (2-D warp of the source + a network for the hidden mouth interior), and
LivePortrait's (Guo et al. 2024) warp-then-decode split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mien.face import landmarks as L
from mien.face.landmarks import BROWS, LIPS_INNER, LIPS_OUTER
from mien.models.reenact.blocks import ResBlock2d
from mien.models.reenact.config import _Json

__all__ = ["HEATMAP_GROUPS", "WarpGuidedConfig", "WarpGuidedRefiner", "flow_field"]

HEATMAP_GROUPS: dict[str, tuple[int, ...]] = {
    "eyes": tuple(int(i) for i in np.concatenate([L.EYE_RIGHT, L.EYE_LEFT])),
    "lips": LIPS_OUTER + LIPS_INNER,
    "brows": BROWS,
}
"""MediaPipe mesh indices of the target-point heatmap channels (in this order)."""

#: non-persistent buffers of :attr:`WarpGuidedRefiner.region_index` (right eye + brow, left eye + brow, lips)
REGION_BUFFERS = ("region_eye_right", "region_eye_left", "region_lips")


@dataclass
class WarpGuidedConfig(_Json):
    """Architecture of :class:`WarpGuidedRefiner`.

    Attributes:
        size: crop side S in px (≥ 32 and divisible by 2**levels, e.g. 64, 112, 128); input and output side.
        width: channels of the first U-Net level (doubled per level, capped at 8×).
        levels: ×2 downsamplings of the U-Net (S / 2**levels at the bottom).
        blocks: residual blocks at the bottom.
        sigma: standard deviation (px at side S) of the target-point heatmaps.
        region_mask: restrict the refinement to the eye-and-brow and mouth regions of the target points
            (:meth:`WarpGuidedRefiner.region_mask`): outside them the output is the warp exactly. Off by default
            (the refiner may correct any pixel).
        mask_pad: growth of each region box on every side, as a fraction of its size.
    """

    size: int = 128
    width: int = 8
    levels: int = 4
    blocks: int = 2
    sigma: float = 1.5
    region_mask: bool = False
    mask_pad: float = 0.35

    def __post_init__(self):
        if not 1 <= self.levels <= 5:
            raise ValueError(f"levels must be in 1..5, got {self.levels}")
        if self.size < 32 or self.size % 2 ** self.levels:
            raise ValueError(f"size must be >= 32 and divisible by 2**levels = {2 ** self.levels}, got {self.size}")


def flow_field(map_x: np.ndarray, map_y: np.ndarray) -> np.ndarray:
    """The warp's backward displacement as the refiner's ``flow`` input.

    Args:
        map_x, map_y: float32 (H, W) source pixel of each output pixel (:func:`mien.face.warp.piecewise_affine_maps`).

    Returns:
        float32 (2, H, W): (map − identity) / W, i.e. where each output pixel samples the source, relative to
        itself, in units of the crop side.
    """
    h, w = map_x.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    return np.stack([(map_x - xs) / w, (map_y - ys) / w]).astype(np.float32)


class WarpGuidedRefiner(nn.Module):
    """Refinement U-Net over the piecewise-affine warp (module docstring).

    Inputs (all float32, batch B, side S = ``config.size``):
        warped: (B, 3, S, S) RGB [0, 1], the source crop after the mesh warp (baseline (b)'s output).
        source: (B, 3, S, S) RGB [0, 1], the unwarped source crop.
        flow: (B, 2, S, S), :func:`flow_field` of the warp's maps.
        points: (B, 468, 2) the warp's target mesh points, x, y in crop pixels (pixel centres at i + 0.5
            or i — sub-pixel conventions do not matter at the heatmap's width).

    Returns:
        (B, 3, S, S) RGB, float32; equal to ``warped`` exactly while the output layers are zero (at init).

    Raises:
        ValueError: wrong shapes.
    """

    def __init__(self, config: WarpGuidedConfig | None = None):
        super().__init__()
        self.config = cfg = config or WarpGuidedConfig()
        self.size = cfg.size
        idx = [torch.tensor(v) for v in HEATMAP_GROUPS.values()]
        self.register_buffer("group_index", torch.cat(idx), persistent=False)
        self.register_buffer("group_id", torch.cat([torch.full((len(v),), k) for k, v in enumerate(idx)]),
                             persistent=False)
        r = max(1, int(round(3 * cfg.sigma)))
        t = torch.arange(-r, r + 1, dtype=torch.float32)
        g = torch.exp(-0.5 * (t / cfg.sigma) ** 2)
        self.register_buffer("blur", (g / g.max()), persistent=False)
        eye_r = np.concatenate([L.EYE_RIGHT, BROWS[:10]])  # subject's right eye and brow
        eye_l = np.concatenate([L.EYE_LEFT, BROWS[10:]])
        # the region_mask boxes' point groups: buffers so they move with the module (not in the state dict)
        for name, v in zip(REGION_BUFFERS, (eye_r, eye_l, LIPS_OUTER + LIPS_INNER), strict=True):
            self.register_buffer(name, torch.as_tensor(v, dtype=torch.long), persistent=False)
        cin = 3 + 3 + 2 + len(idx)
        widths = [min(cfg.width * 2 ** i, cfg.width * 8) for i in range(cfg.levels + 1)]
        self.stem = nn.Conv2d(cin, widths[0], 3, padding=1)
        self.down = nn.ModuleList(ResBlock2d(widths[i], widths[i + 1]) for i in range(cfg.levels))
        self.mid = nn.Sequential(*(ResBlock2d(widths[-1], widths[-1]) for _ in range(cfg.blocks)))
        self.up = nn.ModuleList(ResBlock2d(widths[i + 1] + widths[i], widths[i]) for i in reversed(range(cfg.levels)))
        self.to_rgb = nn.Conv2d(widths[0], 3, 3, padding=1)
        self.to_mask = nn.Conv2d(widths[0], 1, 3, padding=1)
        self.to_residual = nn.Conv2d(widths[0], 3, 3, padding=1)
        for m in (self.to_mask, self.to_residual):
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)

    @property
    def region_index(self) -> list[torch.Tensor]:
        """Point groups of :meth:`region_mask`'s boxes: long (n,) mesh indices of the subject's right eye and brow,
        left eye and brow, and lips (outer + inner), on the module's device."""
        return [getattr(self, name) for name in REGION_BUFFERS]

    def heatmaps(self, points: torch.Tensor) -> torch.Tensor:
        """(B, 468, 2) crop-px points → (B, G, S, S) Gaussian heatmaps (peak 1 per point, summed, clipped to 1)
        of the :data:`HEATMAP_GROUPS` (bilinear splat + separable Gaussian blur)."""
        b, s, ng = points.shape[0], self.size, len(HEATMAP_GROUPS)
        p = points[:, self.group_index, :2].float()
        x0, y0 = p[..., 0].floor(), p[..., 1].floor()
        fx, fy = p[..., 0] - x0, p[..., 1] - y0
        grid = p.new_zeros(b, ng, s * s)
        gid = self.group_id.expand(b, -1)
        for dx, dy, w in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
            xi, yi = x0 + dx, y0 + dy
            ok = (xi >= 0) & (xi < s) & (yi >= 0) & (yi < s)
            flat = (yi.clamp(0, s - 1) * s + xi.clamp(0, s - 1)).long()
            grid.view(b, -1).scatter_add_(1, gid * s * s + flat, (w * ok).to(grid.dtype))
        k = self.blur.to(grid.dtype)
        h = grid.view(b * ng, 1, s, s)
        h = F.conv2d(h, k.view(1, 1, 1, -1), padding=(0, len(k) // 2))
        h = F.conv2d(h, k.view(1, 1, -1, 1), padding=(len(k) // 2, 0))
        return h.view(b, ng, s, s).clamp(max=1.0)

    def forward(self, warped: torch.Tensor, source: torch.Tensor, flow: torch.Tensor,
                points: torch.Tensor) -> torch.Tensor:
        s = self.size
        for name, x, c in (("warped", warped, 3), ("source", source, 3), ("flow", flow, 2)):
            if x.ndim != 4 or x.shape[1] != c or x.shape[-2:] != (s, s):
                raise ValueError(f"{name} must be (B, {c}, {s}, {s}), got {tuple(x.shape)}")
        if points.ndim != 3 or points.shape[1] < 468 or points.shape[2] < 2:
            raise ValueError(f"points must be (B, 468, 2) crop px, got {tuple(points.shape)}")
        x = torch.cat([warped * 2 - 1, source * 2 - 1, flow * 4, self.heatmaps(points)], 1)
        h = self.stem(x)
        skips = []
        for blk in self.down:
            skips.append(h)
            h = blk(F.avg_pool2d(h, 2))
        h = self.mid(h)
        for blk in self.up:
            h = blk(torch.cat([F.interpolate(h, scale_factor=2.0, mode="nearest"), skips.pop()], 1))
        h = F.silu(h)
        a = self.to_mask(h)
        alpha = a + (a.clamp(0, 1) - a).detach()  # values clamped to [0, 1], gradient passed (a starts at 0)
        gen = torch.sigmoid(self.to_rgb(h))
        correction = alpha * (gen - warped) + self.to_residual(h)
        if self.config.region_mask:
            correction = correction * self.region_mask(points).to(correction.dtype)
        return warped + correction

    def region_mask(self, points: torch.Tensor) -> torch.Tensor:
        """Soft mask (B, 1, S, S) in [0, 1] of the regions the refiner may change: per side, the box around the
        target eye and brow points, and the box around the lip points, each grown by ``config.mask_pad`` of its
        size on every side (so an opening mouth's interior and a closing eyelid are inside), edges softened by
        a 5-px box blur (boxes: :func:`mien.face.landmarks.region_box_masks`).

        Args:
            points: (B, 468, 2) target mesh points, crop px.
        """
        p = points[..., :2].float()
        m = L.region_box_masks(p, self.region_index, self.size, self.config.mask_pad).any(1, keepdim=True)
        return F.avg_pool2d(m.to(p.dtype), 5, stride=1, padding=2, count_include_pad=False)
