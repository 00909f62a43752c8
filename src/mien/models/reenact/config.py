"""Configurations of the reenactment family (plain dataclasses; what ``config.json`` of an export holds)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

CROP = "aligned-ffhq-0.0"
"""Crop contract of the reenactment models: ``mien prepare``'s aligned FFHQ-style crop with margin 0."""


class _Json:
    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict):
        """Inverse of :meth:`to_dict`. Raises ValueError on unknown keys."""
        extra = set(d) - {f.name for f in fields(cls)}
        if extra:
            raise ValueError(f"unknown {cls.__name__} keys: {sorted(extra)}")
        kw = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**kw)


@dataclass
class ReenactConfig(_Json):
    """Architecture of :class:`~mien.models.reenact.nets.ReenactModel`.

    Attributes:
        size: base crop side S in pixels (power of 2, ≥ 32); the model's input and output side (2·S with ``hr``).
        enc_width: channels of the first appearance-encoder stage (doubled at each ×2 downsampling, capped ×8).
        volume_channels, volume_depth: C and D of the appearance volume (B, C, D, S/4, S/4).
        descriptor_dim: De of the global appearance descriptor e_s.
        z_dim: Z of the expression latent (smaller values = EMOPortraits' tighter latent).
        motion_width: channels of the motion encoder's first stage.
        warp_width: channels of the flow generators; max_flow: bound of the signed flow (normalised units).
        g3d_width: channels of the 3-D U-Net's first level; g3d_levels: its downsamplings (each ×2 on D, H, W).
        g2d_width: channels of the 2-D decoder at S/4; g2d_blocks: residual blocks there.
        use_roll: use the pose's roll (off: aligned crops have level eyes, see ``pose_rotation``).
        learned_pose: add a learned rotation residual (yaw, pitch, roll in degrees, zero-initialised) to the
            pose from mien's PnP; translation is always learned (zero-initialised): the aligned crop removes the
            camera-frame translation that the pose's tx, ty, tz (mm) describe.
        hr: a 2× :class:`~mien.models.reenact.extra.GHR` enhancer follows the base generator.
        hr_width: GHR channels.
    """

    size: int = 64
    enc_width: int = 16
    volume_channels: int = 8
    volume_depth: int = 8
    descriptor_dim: int = 64
    z_dim: int = 32
    motion_width: int = 16
    warp_width: int = 16
    max_flow: float = 0.5
    g3d_width: int = 16
    g3d_levels: int = 1
    g2d_width: int = 64
    g2d_blocks: int = 2
    use_roll: bool = False
    learned_pose: bool = False
    hr: bool = False
    hr_width: int = 32

    def __post_init__(self):
        if self.size < 32 or self.size & (self.size - 1):
            raise ValueError(f"size must be a power of 2 >= 32, got {self.size}")
        if self.volume_depth % 4 or self.volume_depth % (2 ** self.g3d_levels):
            raise ValueError(f"volume_depth must be divisible by 4 and 2**g3d_levels, got {self.volume_depth}")

    @property
    def volume_size(self) -> int:
        """H = W of the volume (S / 4)."""
        return self.size // 4

    @property
    def out_size(self) -> int:
        """Side of the model's input and output crops: S, or 2·S with the HR enhancer."""
        return self.size * (2 if self.hr else 1)


@dataclass
class StudentConfig(_Json):
    """Architecture of :class:`~mien.models.reenact.extra.Student`.

    Attributes:
        size: crop side S (driver in, avatar out).
        num_avatars: avatars it renders (one learned modulation map each).
        width: channels at the bottleneck (S/8); map_channels, map_size: the per-avatar SPADE map.
    """

    size: int = 64
    num_avatars: int = 4
    width: int = 64
    map_channels: int = 16
    map_size: int = 16
