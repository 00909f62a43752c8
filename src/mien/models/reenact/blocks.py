"""Building blocks of the reenactment networks: residual 2-D / 3-D blocks with GroupNorm (batch-independent, so
batched == per-sample) and SPADE (Park et al., CVPR 2019)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def groups(channels: int) -> int:
    """GroupNorm group count: up to 8 groups that divide ``channels``."""
    for g in (8, 4, 2, 1):
        if channels % g == 0:
            return g
    return 1


class ResBlock2d(nn.Module):
    """GN → SiLU → conv3×3 → GN → SiLU → conv3×3, plus a 1×1 shortcut when the width changes."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.n1, self.c1 = nn.GroupNorm(groups(cin), cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.n2, self.c2 = nn.GroupNorm(groups(cout), cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.c1(F.silu(self.n1(x)))
        return self.skip(x) + self.c2(F.silu(self.n2(h)))


class ResBlock3d(nn.Module):
    """3-D twin of :class:`ResBlock2d`."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.n1, self.c1 = nn.GroupNorm(groups(cin), cin), nn.Conv3d(cin, cout, 3, padding=1)
        self.n2, self.c2 = nn.GroupNorm(groups(cout), cout), nn.Conv3d(cout, cout, 3, padding=1)
        self.skip = nn.Conv3d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.c1(F.silu(self.n1(x)))
        return self.skip(x) + self.c2(F.silu(self.n2(h)))


class SPADE(nn.Module):
    """Spatially-adaptive normalisation: ``IN(x) · (1 + γ(m)) + β(m)`` with γ, β convolved from a map ``m``
    resized to x (Park et al., CVPR 2019)."""

    def __init__(self, channels: int, map_channels: int, hidden: int = 32):
        super().__init__()
        self.norm = nn.InstanceNorm2d(channels, affine=False)
        self.shared = nn.Sequential(nn.Conv2d(map_channels, hidden, 3, padding=1), nn.ReLU())
        self.gamma = nn.Conv2d(hidden, channels, 3, padding=1)
        self.beta = nn.Conv2d(hidden, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        m = F.interpolate(m, size=x.shape[-2:], mode="bilinear", align_corners=False)
        h = self.shared(m)
        return self.norm(x) * (1 + self.gamma(h)) + self.beta(h)


class SPADEResBlock(nn.Module):
    """SPADE → SiLU → conv3×3, twice, plus a (1×1) shortcut (SPADE-ResBlk of Park et al.)."""

    def __init__(self, cin: int, cout: int, map_channels: int):
        super().__init__()
        self.s1, self.c1 = SPADE(cin, map_channels), nn.Conv2d(cin, cout, 3, padding=1)
        self.s2, self.c2 = SPADE(cout, map_channels), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1, bias=False) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        h = self.c1(F.silu(self.s1(x, m)))
        return self.skip(x) + self.c2(F.silu(self.s2(h, m)))
