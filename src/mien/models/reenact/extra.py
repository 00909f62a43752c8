"""Discriminator, high-resolution enhancer (GHR) and the per-avatar distilled Student of the reenactment family.

Source: MegaPortraits (Drobyshev et al., ACM MM 2022) §3.2 (GHR) and §3.3 (student with per-avatar SPADE);
pix2pixHD (Wang et al., CVPR 2018) for the multi-scale patch discriminator with feature matching. The seed's
GHR, Student and discriminator could not be constructed or were single-scale (``shared/seeds/DIGEST.md`` §3.7).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mien.models.reenact.blocks import ResBlock2d, SPADEResBlock, groups
from mien.models.reenact.config import StudentConfig

__all__ = ["GHR", "MultiScaleDiscriminator", "PatchDiscriminator", "Student"]


class PatchDiscriminator(nn.Module):
    """PatchGAN: 4×4 stride-2 convs (LeakyReLU 0.2, GroupNorm after the first) → 1-channel logit map."""

    def __init__(self, width: int = 32, layers: int = 3):
        super().__init__()
        blocks, c = [nn.Sequential(nn.Conv2d(3, width, 4, 2, 1), nn.LeakyReLU(0.2))], width
        for _ in range(layers - 1):
            c2 = min(2 * c, 8 * width)
            blocks.append(nn.Sequential(nn.Conv2d(c, c2, 4, 2, 1), nn.GroupNorm(groups(c2), c2), nn.LeakyReLU(0.2)))
            c = c2
        self.blocks = nn.ModuleList(blocks)
        self.out = nn.Conv2d(c, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        feats, h = [], x * 2 - 1
        for b in self.blocks:
            h = b(h)
            feats.append(h)
        return self.out(h), feats


class MultiScaleDiscriminator(nn.Module):
    """``scales`` patch discriminators on the image downsampled ×2 each time (pix2pixHD).

    ``forward(x (B, 3, S, S) [0, 1])`` → list over scales of (logits (B, 1, h, w), features list) — the features
    feed the feature-matching loss.
    """

    def __init__(self, scales: int = 2, width: int = 32, layers: int = 3):
        super().__init__()
        self.nets = nn.ModuleList([PatchDiscriminator(width, layers) for _ in range(scales)])

    def forward(self, x: torch.Tensor) -> list[tuple[torch.Tensor, list[torch.Tensor]]]:
        out = []
        for i, net in enumerate(self.nets):
            if i:
                x = F.avg_pool2d(x, 2)
            out.append(net(x))
        return out


class GHR(nn.Module):
    """2× enhancer: base output (B, 3, S, S) [0, 1] → (B, 3, 2S, 2S) [0, 1].

    Residual in logit space on the bilinear upsample: ``sigmoid(logit(up(x)) + r(x))`` with the last conv of r
    zero-initialised, so an untrained GHR is bilinear upsampling.
    """

    def __init__(self, width: int = 32, blocks: int = 2):
        super().__init__()
        self.inp = nn.Conv2d(3, width, 3, padding=1)
        self.body = nn.Sequential(*[ResBlock2d(width, width) for _ in range(blocks)])
        self.up = ResBlock2d(width, width // 2)
        self.out = nn.Conv2d(width // 2, 3, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        h = self.body(self.inp(x * 2 - 1))
        h = self.up(F.interpolate(h, scale_factor=2, mode="nearest"))
        return torch.sigmoid(torch.logit(up.clamp(1e-4, 1 - 1e-4)) + self.out(F.silu(h)))


class Student(nn.Module):
    """Per-avatar distilled generator: driver crop + avatar index → that avatar with the driver's motion.

    A convolutional encoder of the driver (to S/8) and a decoder of SPADE residual blocks modulated by one
    learned map per avatar (``avatar_maps`` (N, Cm, Hm, Hm)); trained to reproduce the full model's output for
    the avatar's source image (MegaPortraits §3.3). ``forward(drv (B, 3, S, S) [0, 1], avatar (B,) int64)`` →
    (B, 3, S, S) [0, 1].
    """

    def __init__(self, config: StudentConfig | None = None):
        super().__init__()
        self.config = cfg = config or StudentConfig()
        w = cfg.width
        widths = [w // 4, w // 2, w]
        enc, c = [nn.Conv2d(3, widths[0], 3, padding=1)], widths[0]
        for c2 in widths:
            enc += [ResBlock2d(c, c2), nn.AvgPool2d(2)]
            c = c2
        self.encoder = nn.Sequential(*enc)
        self.avatar_maps = nn.Parameter(torch.randn(cfg.num_avatars, cfg.map_channels, cfg.map_size, cfg.map_size)
                                        * 0.1)
        self.mid = SPADEResBlock(w, w, cfg.map_channels)
        self.dec = nn.ModuleList([SPADEResBlock(a, b, cfg.map_channels)
                                  for a, b in ((w, w // 2), (w // 2, w // 4), (w // 4, w // 4))])
        self.out = nn.Conv2d(w // 4, 3, 3, padding=1)

    @property
    def size(self) -> int:
        return self.config.size

    def forward(self, drv: torch.Tensor, avatar: torch.Tensor) -> torch.Tensor:
        m = self.avatar_maps[avatar]
        h = self.mid(self.encoder(drv * 2 - 1), m)
        for blk in self.dec:
            h = blk(F.interpolate(h, scale_factor=2, mode="nearest"), m)
        return torch.sigmoid(self.out(F.silu(h)))
