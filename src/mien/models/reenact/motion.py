"""Appearance and motion descriptors of the one-shot reenactment model, and head rotations from mien's pose.

Coordinate frame (all of mien, :mod:`mien.face.geometry`): x to the image's right, y down, z away from the
camera. The feature volume of :class:`Appearance` spans [-1, 1]³ in ``grid_sample``'s normalised coordinates
(x ↔ W, y ↔ H, z ↔ D, D increasing away from the camera), so a rotation of mien's camera frame acts on the
volume's normalised coordinates unchanged.

Motion convention: a head with motion (R, t) places a point of the canonical (frontal, centred) volume at
``x_obs = R · x_can + t``.

Source: MegaPortraits (Drobyshev et al., ACM MM 2022) for the decomposition into volumetric appearance and
(R, t, z) motion; FOMM (Siarohin et al., NeurIPS 2019) and LivePortrait (Guo et al., 2024) for relative motion.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["Appearance", "Motion", "euler_to_matrix", "pose_rotation"]


@dataclass
class Appearance:
    """What :meth:`ReenactModel.encode_appearance` extracts from a source image.

    Attributes:
        volume: (B, C, D, H, W) float32 volumetric features v_s in the source's own head pose.
        descriptor: (B, De) float32 global appearance descriptor e_s (conditions the warp generators).
    """

    volume: torch.Tensor
    descriptor: torch.Tensor


@dataclass
class Motion:
    """Head motion and expression of one image (batched).

    Attributes:
        rotation: (B, 3, 3) float32 rotation canonical → observed (mien's camera frame).
        translation: (B, 3) float32 translation in the volume's normalised units ([-1, 1] spans the crop).
        z: (B, Z) float32 expression latent.
    """

    rotation: torch.Tensor
    translation: torch.Tensor
    z: torch.Tensor

    @staticmethod
    def relative(m_src: Motion, m_drv0: Motion, m_drvt: Motion) -> Motion:
        """Relative motion (FOMM, LivePortrait): the driver's change since its first frame, applied to the source.

        ``R = R_t R_0ᵀ R_s``, ``t = t_s + (t_t − t_0)``, ``z = z_s + (z_t − z_0)``; with ``m_drvt == m_drv0`` the
        result is ``m_src``. All three have the same batch size (or broadcast: B = 1 for the reference ones).
        """
        r = m_drvt.rotation @ m_drv0.rotation.transpose(-1, -2) @ m_src.rotation
        return Motion(r, m_src.translation + (m_drvt.translation - m_drv0.translation),
                      m_src.z + (m_drvt.z - m_drv0.z))

    def index(self, i) -> Motion:
        """The motions of batch rows ``i`` (int, slice or index tensor); an int keeps a batch of one."""
        if isinstance(i, int):
            i = slice(i, i + 1)
        return Motion(self.rotation[i], self.translation[i], self.z[i])

    @staticmethod
    def cat(motions: list[Motion]) -> Motion:
        """Concatenate motions along the batch."""
        return Motion(torch.cat([m.rotation for m in motions]), torch.cat([m.translation for m in motions]),
                      torch.cat([m.z for m in motions]))


def euler_to_matrix(pitch: torch.Tensor, yaw: torch.Tensor, roll: torch.Tensor) -> torch.Tensor:
    """``R = Rx(pitch) · Ry(yaw) · Rz(roll)`` (radians, any batch shape (...,)) → (..., 3, 3).

    The torch twin of :func:`mien.face.geometry.euler_to_rotation` (mien's head-pose convention).
    """
    ca, sa, cb, sb, cc, sc = (torch.cos(pitch), torch.sin(pitch), torch.cos(yaw), torch.sin(yaw),
                              torch.cos(roll), torch.sin(roll))
    one, zero = torch.ones_like(pitch), torch.zeros_like(pitch)
    rx = torch.stack([one, zero, zero, zero, ca, -sa, zero, sa, ca], -1).unflatten(-1, (3, 3))
    ry = torch.stack([cb, zero, sb, zero, one, zero, -sb, zero, cb], -1).unflatten(-1, (3, 3))
    rz = torch.stack([cc, -sc, zero, sc, cc, zero, zero, zero, one], -1).unflatten(-1, (3, 3))
    return rx @ ry @ rz


def pose_rotation(pose: torch.Tensor, use_roll: bool = False) -> torch.Tensor:
    """Head rotation (B, 3, 3) from mien's per-frame pose.

    Args:
        pose: (B, 6) float32 as the shards' ``pose.npy``: yaw, pitch, roll in degrees, tx, ty, tz in mm.
        use_roll: include roll. False by default: ``mien prepare``'s aligned crops are rotated so the eyes are
            level, which removes the in-plane roll from the crop (the learned flow takes what is left).

    Raises:
        ValueError: ``pose`` is not (B, 6).
    """
    if pose.ndim != 2 or pose.shape[1] < 3:
        raise ValueError(f"pose must be (B, 6) yaw, pitch, roll deg, tx, ty, tz mm; got {tuple(pose.shape)}")
    ang = pose[:, :3].float() * (math.pi / 180.0)
    yaw, pitch, roll = ang.unbind(-1)
    return euler_to_matrix(pitch, yaw, roll if use_roll else torch.zeros_like(roll))
