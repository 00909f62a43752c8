"""SMIRK's 3-D face encoders (Retsinas et al., "3D Facial Expressions through Analysis-by-Neural-Synthesis",
CVPR 2024) and TEASER's appearance-token encoder (Liu et al., ICLR 2025), on timm MobileNetV3 backbones.

* :class:`PoseEncoder`: backbone → global average pool → Linear → head rotation (axis-angle, 3) + orthographic
  camera (s, tx, ty); small init (×0.001) so training starts at the default camera.
* :class:`ShapeEncoder`: → S identity coefficients (zero init).
* :class:`ExpressionEncoder`: → E expression coefficients, eyelids (sigmoid-free clamp to [0, 1] as SMIRK), jaw
  = [ReLU(j0), clamp(j1:3, ±0.2)] (init ×0.1).
* :class:`TokenEncoder` (TEASER): the last four feature levels of a MobileNetV3, each average-pooled to a
  1×1, 2×2, 4×4, 8×8 grid (coarsest level first), flattened and projected to D → tokens (B, 4, D), token 0 the
  coarsest. (TEASER's copy of the pose head's "bias 7" into the token head is not reproduced.)
* :class:`Face3DEncoder`: the three (four) encoders together: crop (B, 3, S, S) RGB [0, 1] →
  :class:`~mien.models.face3d.params.Face3DParams`.

Backbones come from ``timm.create_model(name, pretrained=…, features_only=True)``: ``pretrained=True`` loads
timm's ImageNet weights through its hub cache (needs network access once); mien's tiny configs are random-init.
ImageNet normalisation is applied inside the encoders. The backbone name ``faceapi-expression`` instead uses
face-api's FaceExpressionNet features (shipped with mien, frozen; :class:`FaceApiBackbone`) — pretrained on
facial expressions and available offline.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from mien.models.face3d.base import FaceModel
from mien.models.face3d.params import Face3DParams

__all__ = ["ExpressionEncoder", "Face3DEncoder", "PoseEncoder", "ShapeEncoder", "TokenEncoder", "default_camera"]

_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


FACEAPI_BACKBONE = "faceapi-expression"
"""Backbone name of the frozen, shipped face-api FaceExpressionNet feature extractor (:class:`FaceApiBackbone`)."""


class _FeatureInfo:
    """The part of timm's ``feature_info`` the encoders use."""

    def __init__(self, channels):
        self._channels = list(channels)

    def channels(self) -> list[int]:
        return list(self._channels)


class FaceApiBackbone(nn.Module):
    """face-api's FaceExpressionNet feature extractor (shipped with mien, MIT), frozen, as a ``features_only``
    backbone: crop (B, 3, S, S) RGB [0, 1] → resized to 112² → 4 feature maps (32, 64, 128, 256 channels at 56²,
    28², 14², 7²). Always in eval mode; its weights never train."""

    def __init__(self):
        super().__init__()
        from mien.models.faceapi import load_expression_net

        self.net = load_expression_net().features.requires_grad_(False)
        self.feature_info = _FeatureInfo((32, 64, 128, 256))

    def train(self, mode: bool = True):
        super().train(mode)
        self.net.eval()
        return self

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        from mien.models.faceapi.nets import _normalize

        x = F.interpolate(x, size=(112, 112), mode="bilinear", align_corners=False, antialias=x.shape[-1] > 112)
        x = _normalize(x * 255.0)
        out = []
        for block in (self.net.dense0, self.net.dense1, self.net.dense2, self.net.dense3):
            x = block(x)
            out.append(x)
        return out


def _backbone(name: str, pretrained: bool) -> nn.Module:
    """A ``features_only`` backbone: :data:`FACEAPI_BACKBONE` (frozen, shipped) or a timm model name."""
    if name == FACEAPI_BACKBONE:
        return FaceApiBackbone()
    import timm

    return timm.create_model(name, pretrained=pretrained, features_only=True)


def _norm_for(name: str) -> nn.Module:
    return nn.Identity() if name == FACEAPI_BACKBONE else _Normalise()


class _Normalise(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x):
        return (x - self.mean) / self.std


class _Head(nn.Module):
    """Backbone → last feature map → global average pool → Linear(out)."""

    def __init__(self, backbone: str, out: int, pretrained: bool, init_scale: float):
        super().__init__()
        self.norm = _norm_for(backbone)
        self.encoder = _backbone(backbone, pretrained)
        self.fc = nn.Linear(self.encoder.feature_info.channels()[-1], out)
        with torch.no_grad():
            self.fc.weight.mul_(init_scale)
            self.fc.bias.zero_()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.norm(x))[-1].mean((2, 3))

    def forward(self, x):
        return self.fc(self.features(x))


class PoseEncoder(_Head):
    """crop (B, 3, S, S) → (rotation (B, 3) axis-angle rad, camera (B, 3) = s, tx, ty).

    ``s = s0 · exp(raw)`` and ``(tx, ty) = t0 + raw`` around ``camera0 = (s0, tx0, ty0)`` (the model's mean face
    centred in the crop, see :func:`default_camera`), so the initial output is that default camera."""

    def __init__(self, backbone: str, pretrained: bool = False, camera0=(1.0, 0.0, 0.0)):
        super().__init__(backbone, 6, pretrained, 1e-3)
        self.register_buffer("camera0", torch.tensor(camera0, dtype=torch.float32))

    def forward(self, x):
        raw = super().forward(x)
        cam = torch.cat([self.camera0[:1] * torch.exp(raw[:, 3:4]), self.camera0[1:] + raw[:, 4:6]], 1)
        return raw[:, :3], cam


class ShapeEncoder(_Head):
    """crop → (B, S) identity coefficients (zero-initialised head)."""

    def __init__(self, backbone: str, n_shape: int, pretrained: bool = False):
        super().__init__(backbone, n_shape, pretrained, 0.0)


class ExpressionEncoder(_Head):
    """crop → (expression (B, E), jaw (B, 3), eyelids (B, 2)); SMIRK's output constraints."""

    def __init__(self, backbone: str, n_expression: int, pretrained: bool = False):
        super().__init__(backbone, n_expression + 5, pretrained, 0.1)
        self.n_expression = n_expression

    def forward(self, x):
        out = super().forward(x)
        e = self.n_expression
        eyelids = out[:, e:e + 2].clamp(0, 1)
        jaw = torch.cat([F.relu(out[:, e + 2:e + 3]), out[:, e + 3:e + 5].clamp(-0.2, 0.2)], 1)
        return out[:, :e], jaw, eyelids


class TokenEncoder(nn.Module):
    """TEASER's multi-scale appearance tokens: crop → (B, 4, D), token 0 from the coarsest level."""

    GRIDS = (1, 2, 4, 8)

    def __init__(self, backbone: str, dim: int = 256, pretrained: bool = False):
        super().__init__()
        self.norm = _norm_for(backbone)
        self.encoder = _backbone(backbone, pretrained)
        ch = self.encoder.feature_info.channels()[::-1][:4]  # coarsest first
        self.proj = nn.ModuleList(nn.Linear(c * g * g, dim) for c, g in zip(ch, self.GRIDS, strict=True))

    def forward(self, x):
        feats = self.encoder(self.norm(x))[::-1][:4]
        toks = [p(F.adaptive_avg_pool2d(f, g).flatten(1)) for p, f, g in zip(self.proj, feats, self.GRIDS, strict=True)]
        return torch.stack(toks, 1)


def default_camera(face_model: FaceModel, crop: str | None = "aligned-ffhq-0.0",
                   fill: float = 0.75) -> tuple[float, float, float]:
    """The orthographic camera (s, tx, ty) under which the model's mean face lands where mien's ``crop`` puts a
    frontal face (the starting point of :class:`PoseEncoder`).

    For ``aligned-ffhq-<margin>`` crops and a model embedding all 478 MediaPipe landmarks, the crop's own rule
    (:func:`mien.face.align.similarity_params`: eyes and mouth) applied to the mean face's landmarks; otherwise
    the mean face centred with its height spanning ``fill`` of the crop."""
    v = np.asarray(face_model.vertices(batch=1), np.float64)
    if crop and crop.startswith("aligned-ffhq") and len(face_model.embedding) == 478:
        from mien.face.align import similarity_params
        from mien.face.crops import parse_crop_contract

        margin = parse_crop_contract(crop)[1]
        cx, cy, half, _ = similarity_params(np.asarray(face_model.landmarks(v), np.float64), margin)[0]
        return (1.0 / half, -cx / half, -cy / half)
    lo, hi = v[0, :, :2].min(0), v[0, :, :2].max(0)
    s = 2 * fill / max(float(hi[1] - lo[1]), 1e-9)
    c = (lo + hi) / 2
    return (s, float(-s * c[0]), float(-s * c[1]))


class Face3DEncoder(nn.Module):
    """SMIRK (and, with ``tokens``, TEASER) encoder: crop → :class:`Face3DParams`.

    Args:
        face_model: the :class:`FaceModel` whose coefficients are regressed (kept as ``self.face_model``, not a
            sub-module).
        size: input crop side S (``self.size``); the crop is mien's (``crop`` contract, e.g. ``aligned-ffhq-0.0``).
        n_shape, n_expression: how many of the model's first components are regressed.
        pose_backbone, shape_backbone, expression_backbone, token_backbone: timm names (token None: no tokens).
        token_dim: D of the tokens. pretrained: timm ImageNet weights (network access once).
        crop: crop contract string (:func:`mien.face.crops.parse_crop_contract`).

    ``forward(crop)``: crop (B, 3, S, S) float32 RGB in [0, 1] → :class:`Face3DParams` (shape (B, S'),
    expression (B, E), jaw (B, 3), eyelids (B, 2), rotation (B, 3), camera (B, 3), tokens (B, 4, D) or None).

    Raises (forward): ValueError when the crop is not (B, 3, size, size).
    """

    def __init__(self, face_model: FaceModel, size: int, n_shape: int, n_expression: int, pose_backbone: str,
                 shape_backbone: str, expression_backbone: str, token_backbone: str | None = None,
                 token_dim: int = 256, pretrained: bool = False, crop: str = "aligned-ffhq-0.0"):
        super().__init__()
        self.face_model = face_model
        self.size = int(size)
        self.crop = crop
        self.n_shape = min(int(n_shape), face_model.n_shape)
        self.n_expression = min(int(n_expression), face_model.n_expression)
        self.pose = PoseEncoder(pose_backbone, pretrained, default_camera(face_model, crop))
        self.shape = ShapeEncoder(shape_backbone, self.n_shape, pretrained) if self.n_shape else None
        self.expression = ExpressionEncoder(expression_backbone, self.n_expression, pretrained)
        self.tokens = TokenEncoder(token_backbone, token_dim, pretrained) if token_backbone else None

    @property
    def has_tokens(self) -> bool:
        return self.tokens is not None

    def check(self, crop: torch.Tensor) -> None:
        if crop.ndim != 4 or crop.shape[1] != 3 or crop.shape[2:] != (self.size, self.size):
            raise ValueError(f"face3d encoder needs crops (B, 3, {self.size}, {self.size}) RGB in [0, 1], "
                             f"got {tuple(crop.shape)}")

    def forward(self, crop: torch.Tensor) -> Face3DParams:
        self.check(crop)
        rotation, camera = self.pose(crop)
        shape = self.shape(crop) if self.shape is not None else crop.new_zeros((len(crop), 0))
        expression, jaw, eyelids = self.expression(crop)
        tokens = self.tokens(crop) if self.tokens is not None else None
        return Face3DParams(shape, expression, jaw, eyelids, rotation, camera, tokens)
