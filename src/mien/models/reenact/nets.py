"""The one-shot reenactment generator (MegaPortraits' G_base, made correct): Eapp, Emtn, warp generators, G3D,
projection, G2D, assembled in :class:`ReenactModel`.

Source: Drobyshev et al., "MegaPortraits: One-shot Megapixel Neural Head Avatars", ACM MM 2022 (§3.1); the
seed re-implementation (johndpope/MegaPortrait-hack, ``shared/seeds/DIGEST.md`` §3) for the layout, not its bugs.
Head rotation comes from mien's own PnP head pose (``pose.npy``), never from a frozen third-party net.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mien.models.reenact.blocks import ResBlock2d, ResBlock3d
from mien.models.reenact.config import ReenactConfig
from mien.models.reenact.motion import Appearance, Motion, euler_to_matrix, pose_rotation
from mien.models.reenact.warp import ALIGN_CORNERS, WarpGenerator, warp_volume

__all__ = ["G2D", "G3D", "Eapp", "Emtn", "ReenactModel"]


def _check_images(x: torch.Tensor, size: int, name: str) -> None:
    if x.ndim != 4 or x.shape[1] != 3 or x.shape[-1] != size or x.shape[-2] != size:
        raise ValueError(f"{name} must be (B, 3, {size}, {size}) RGB in [0, 1], got {tuple(x.shape)}")


class Eapp(nn.Module):
    """Appearance encoder: image (B, 3, S, S) [0, 1] → volume (B, C, D, S/4, S/4) and descriptor (B, De).

    Stride-2 stem (S/2), residual block, ×2 pooling (S/4), residual block, 1×1 conv to C·D channels reshaped to
    the volume, two 3-D residual blocks; the descriptor is a linear map of the pooled 2-D features.
    """

    def __init__(self, cfg: ReenactConfig):
        super().__init__()
        w = cfg.enc_width
        self.stem = nn.Conv2d(3, w, 4, stride=2, padding=1)
        self.b1, self.b2 = ResBlock2d(w, 2 * w), ResBlock2d(2 * w, 4 * w)
        self.c, self.d = cfg.volume_channels, cfg.volume_depth
        self.to_volume = nn.Conv2d(4 * w, self.c * self.d, 1)
        self.vol_blocks = nn.Sequential(ResBlock3d(self.c, self.c), ResBlock3d(self.c, self.c))
        self.desc = nn.Linear(4 * w, cfg.descriptor_dim)

    def forward(self, x: torch.Tensor) -> Appearance:
        h = self.b2(F.avg_pool2d(self.b1(self.stem(x * 2 - 1)), 2))
        v = self.to_volume(F.silu(h)).unflatten(1, (self.c, self.d))
        return Appearance(self.vol_blocks(v), self.desc(h.mean((2, 3))))


class Emtn(nn.Module):
    """Motion encoder: (image, mien pose) → :class:`Motion` (rotation from the pose, learned translation and z)."""

    def __init__(self, cfg: ReenactConfig):
        super().__init__()
        w, n_down = cfg.motion_width, int(math.log2(cfg.size // 8))
        layers, c = [nn.Conv2d(3, w, 4, stride=2, padding=1)], w
        for _ in range(n_down):
            c2 = min(2 * c, 8 * w)
            layers += [ResBlock2d(c, c2), nn.AvgPool2d(2)]
            c = c2
        self.body = nn.Sequential(*layers)
        self.z = nn.Linear(c, cfg.z_dim)
        self.extra = nn.Linear(c, 6 if cfg.learned_pose else 3)  # [rotation residual deg (3)] + translation (3)
        nn.init.zeros_(self.extra.weight)
        nn.init.zeros_(self.extra.bias)
        self.use_roll, self.learned_pose = cfg.use_roll, cfg.learned_pose

    def forward(self, x: torch.Tensor, pose: torch.Tensor) -> Motion:
        h = self.body(x * 2 - 1).mean((2, 3))
        extra = self.extra(h)
        rot = pose_rotation(pose, self.use_roll)
        if self.learned_pose:
            d = extra[:, 3:] * (math.pi / 180.0)
            rot = rot @ euler_to_matrix(d[:, 1], d[:, 0], d[:, 2])
        return Motion(rot, torch.tanh(extra[:, :3]) * 0.5, self.z(h))


class G3D(nn.Module):
    """3-D U-Net on the canonical volume (residual blocks, ×2 average pooling, trilinear upsampling, skips)."""

    def __init__(self, channels: int, width: int, levels: int):
        super().__init__()
        self.inp = nn.Conv3d(channels, width, 3, padding=1)
        widths = [width * 2 ** i for i in range(levels + 1)]
        self.enc = nn.ModuleList([ResBlock3d(widths[i], widths[i + 1]) for i in range(levels)])
        self.mid = ResBlock3d(widths[-1], widths[-1])
        self.dec = nn.ModuleList([ResBlock3d(widths[i + 1] + widths[i], widths[i]) for i in reversed(range(levels))])
        self.out = nn.Conv3d(width, channels, 3, padding=1)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        h = self.inp(v)
        skips = []
        for blk in self.enc:
            skips.append(h)
            h = F.avg_pool3d(blk(h), 2)
        h = self.mid(h)
        for blk in self.dec:
            s = skips.pop()
            h = F.interpolate(h, size=s.shape[-3:], mode="trilinear", align_corners=ALIGN_CORNERS)
            h = blk(torch.cat([h, s], 1))
        return v + self.out(F.silu(h))


class G2D(nn.Module):
    """Projection and 2-D decoder: volume (B, C, D, S/4, S/4) → image (B, 3, S, S) in [0, 1].

    The orthographic projection folds depth into channels (C·D → 1×1 conv), as MegaPortraits does, so the
    decoder can learn occlusion along each camera ray.
    """

    def __init__(self, cfg: ReenactConfig):
        super().__init__()
        w = cfg.g2d_width
        self.project = nn.Conv2d(cfg.volume_channels * cfg.volume_depth, w, 1)
        self.blocks = nn.Sequential(*[ResBlock2d(w, w) for _ in range(cfg.g2d_blocks)])
        self.up1 = ResBlock2d(w, w // 2)
        self.up2 = nn.Conv2d(w // 2, w // 4, 3, padding=1)  # full resolution: one plain conv (speed)
        self.out = nn.Conv2d(w // 4, 3, 3, padding=1)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        h = self.blocks(self.project(v.flatten(1, 2)))
        h = self.up1(F.interpolate(h, scale_factor=2, mode="nearest"))
        h = self.up2(F.silu(F.interpolate(h, scale_factor=2, mode="nearest")))
        return torch.sigmoid(self.out(F.silu(h)))


class ReenactModel(nn.Module):
    """One-shot reenactment: source appearance + driver motion → image (the fixed interface of ``mien reenact``).

    ::

        model = load_reenact_model(dir)                  # eval mode
        app = model.encode_appearance(src)               # src (B, 3, S, S) float32 RGB [0, 1], S = model.size
        m = model.encode_motion(img, pose)               # pose (B, 6) as pose.npy → Motion
        out = model.decode(app, m_src, m_drv)            # (B, 3, S, S) float32 [0, 1]

    Crops are ``mien prepare``'s aligned crops (contract :data:`~mien.models.reenact.config.CROP`, side S).
    With ``config.hr`` a 2× GHR enhancer follows: S = 2 · ``config.size``; the encoders see the input
    downsampled (antialiased bilinear) to ``config.size``.

    Attributes:
        au_directions: {"AU01": (Z,) tensor, …} directions of the expression latent per unit AU probability
            (:meth:`edit`), or None; stored in the export.
    """

    def __init__(self, config: ReenactConfig | None = None):
        super().__init__()
        self.config = cfg = config or ReenactConfig()
        self.eapp, self.emtn = Eapp(cfg), Emtn(cfg)
        shape = (cfg.volume_depth, cfg.volume_size, cfg.volume_size)
        in_dim = cfg.z_dim + cfg.descriptor_dim
        self.warp_s2c = WarpGenerator(in_dim, shape, cfg.warp_width, cfg.max_flow)
        self.warp_c2d = WarpGenerator(in_dim, shape, cfg.warp_width, cfg.max_flow)
        self.g3d = G3D(cfg.volume_channels, cfg.g3d_width, cfg.g3d_levels)
        self.g2d = G2D(cfg)
        if cfg.hr:
            from mien.models.reenact.extra import GHR

            self.ghr = GHR(cfg.hr_width)
        else:
            self.ghr = None
        self.au_directions: dict[str, torch.Tensor] | None = None

    @property
    def size(self) -> int:
        """Crop side S (px) of inputs and outputs."""
        return self.config.out_size

    def _base_input(self, x: torch.Tensor, name: str) -> torch.Tensor:
        _check_images(x, self.size, name)
        if self.ghr is not None:
            x = F.interpolate(x, size=self.config.size, mode="bilinear", antialias=True, align_corners=False)
        return x

    def encode_appearance(self, src: torch.Tensor) -> Appearance:
        """Source (B, 3, S, S) float32 RGB [0, 1] → :class:`Appearance`. Raises ValueError on a wrong shape."""
        return self.eapp(self._base_input(src, "src"))

    def encode_motion(self, img: torch.Tensor, pose: torch.Tensor) -> Motion:
        """Image (B, 3, S, S) [0, 1] and its pose (B, 6) (yaw, pitch, roll deg, tx, ty, tz mm) → :class:`Motion`."""
        return self.emtn(self._base_input(img, "img"), pose)

    def canonical(self, app: Appearance, m_src: Motion) -> torch.Tensor:
        """Source volume warped to the canonical (frontal, neutral) pose: (B, C, D, H, W)."""
        flow = self.warp_s2c(m_src.z, app.descriptor)
        return warp_volume(app.volume, m_src.rotation, m_src.translation, flow, inverse=False)

    def decode_base(self, app: Appearance, m_src: Motion, m_drv: Motion) -> torch.Tensor:
        """The base generator's output (B, 3, config.size, config.size) [0, 1] (before GHR)."""
        vc = self.g3d(self.canonical(app, m_src))
        flow = self.warp_c2d(m_drv.z, app.descriptor)
        return self.g2d(warp_volume(vc, m_drv.rotation, m_drv.translation, flow, inverse=True))

    def decode(self, app: Appearance, m_src: Motion, m_drv: Motion) -> torch.Tensor:
        """Render the source's appearance with the driver's motion: (B, 3, S, S) float32 [0, 1]."""
        out = self.decode_base(app, m_src, m_drv)
        return self.ghr(out) if self.ghr is not None else out

    def forward(self, src: torch.Tensor, drv: torch.Tensor, src_pose: torch.Tensor,
                drv_pose: torch.Tensor) -> torch.Tensor:
        """Encode + decode: (B, 3, S, S) ×2 and poses (B, 6) ×2 → (B, 3, S, S) [0, 1]."""
        app = self.encode_appearance(src)
        return self.decode(app, self.encode_motion(src, src_pose), self.encode_motion(drv, drv_pose))

    def edit(self, m: Motion, weights: dict[str, float]) -> Motion:
        """``z + Σ_k w_k · direction_k`` (w in AU-probability units, e.g. {"AU12": 0.8}).

        Raises:
            ValueError: the model has no AU directions, or an AU it does not know.
        """
        if not self.au_directions:
            raise ValueError("this model has no AU directions (export it with --au-data)")
        z = m.z
        for name, w in weights.items():
            if name not in self.au_directions:
                raise ValueError(f"unknown AU {name!r}; the model knows {sorted(self.au_directions)}")
            z = z + float(w) * self.au_directions[name].to(z)
        return Motion(m.rotation, m.translation, z)
