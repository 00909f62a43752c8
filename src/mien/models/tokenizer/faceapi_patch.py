"""Frozen face-api feature maps as offline, pretrained patch tokenizers (no download: the weights ship in mien).

Backbones (``TokenizerConfig.backbone``; the input contract each one needs is in :data:`FACEAPI_BACKBONES`):

=============================== ====== ===================================== =========================
name                            crop   layer (face-api graph)                tokens N × C
=============================== ====== ===================================== =========================
``faceapi-expression``          112²   FaceExpressionNet ``dense3`` (before  7×7 = 49 × 256
                                       the 7×7 average pool)
``faceapi-recognition``         150²   FaceRecognitionNet ``conv256_2`` (the 4×4 = 16 × 256
                                       last stage before the 2×2 output
                                       block and the global mean)
``faceapi-recognition-s8``      150²   FaceRecognitionNet ``conv128_2``      8×8 = 64 × 128
=============================== ====== ===================================== =========================

Input contract: float RGB in [0, 1], H = W = crop; the tokenizer normalises with ``mean = MEAN_RGB / 255``,
``std = 1``, which equals face-api's own ``(255·x − MEAN_RGB) / 255``. The backbone is frozen (no gradients,
kept in eval mode even when the parent is put in train mode); a trainable Linear projects C to the model width
D when they differ. The tokens carry no positions: the table is a fixed 2-D sine table (``sincos_2d``).

Source of the nets and weights: face-api (Vincent Mühler / ``@vladmandic/face-api``), MIT — see
:mod:`mien.models.faceapi`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mien.models.tokenizer.config import FACEAPI_BACKBONES
from mien.models.tokenizer.patch import PatchTokenizer, sincos_2d


class _ExpressionTrunk(nn.Module):
    """FaceExpressionNet's four dense blocks: normalised (B, 3, 112, 112) → (B, 256, 7, 7)."""

    def __init__(self, features: nn.Module):
        super().__init__()
        self.dense0, self.dense1 = features.dense0, features.dense1
        self.dense2, self.dense3 = features.dense2, features.dense3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense3(self.dense2(self.dense1(self.dense0(x))))


_RECOGNITION_LAYERS = ("conv32_1", "conv32_2", "conv32_3", "conv64_down", "conv64_1", "conv64_2", "conv64_3",
                       "conv128_down", "conv128_1", "conv128_2", "conv256_down", "conv256_1", "conv256_2")


class _RecognitionTrunk(nn.Module):
    """FaceRecognitionNet up to and including ``last``: normalised (B, 3, 150, 150) → (B, C, h, w)."""

    def __init__(self, net: nn.Module, last: str):
        super().__init__()
        self.conv32_down = net.conv32_down
        names = _RECOGNITION_LAYERS[: _RECOGNITION_LAYERS.index(last) + 1]
        self.layers = nn.ModuleDict({n: getattr(net, n) for n in names})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.max_pool2d(self.conv32_down(x), 3, 2)
        for layer in self.layers.values():
            out = layer(out)
        return out


def _build_trunk(name: str) -> nn.Module:
    from mien.models.faceapi import load_expression_net, load_recognition_net

    spec = FACEAPI_BACKBONES[name]
    if spec["net"] == "expression":
        return _ExpressionTrunk(load_expression_net().features)
    return _RecognitionTrunk(load_recognition_net(), spec["layer"])


class FaceApiPatchTokenizer(PatchTokenizer):
    """Patch tokens from a frozen face-api feature map (shipped weights; offline).

    Args:
        name: a key of :data:`~mien.models.tokenizer.config.FACEAPI_BACKBONES` (e.g. "faceapi-expression").
        dim: output token size D (divisible by 4); a trainable Linear projects the C backbone channels to D
            when C ≠ D.

    Forward: float (B, 3, S, S) RGB in [0, 1] (S = the backbone's crop, 112 or 150) → ``tokens`` float32
    (B, N, D) (row-major over the grid), ``pos`` float32 (N, D) fixed 2-D sine table
    (``positions_in_tokens = False``).

    Raises:
        ValueError: unknown name, or D not divisible by 4.
        FileNotFoundError: the face-api weights are not installed.
    """

    def __init__(self, name: str, dim: int):
        super().__init__()
        if name not in FACEAPI_BACKBONES:
            raise ValueError(f"unknown face-api backbone {name!r}; choose from {sorted(FACEAPI_BACKBONES)}")
        spec = FACEAPI_BACKBONES[name]
        self.name, self.crop_size, self.dim, self.freeze = name, spec["crop_size"], dim, True
        self.positions_in_tokens = False
        self.grid = tuple(spec["grid"])
        self.backbone_dim = spec["channels"]
        self.register_buffer("mean", torch.tensor(spec["mean"], dtype=torch.float32).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor(spec["std"], dtype=torch.float32).view(1, 3, 1, 1),
                             persistent=False)
        self.backbone = _build_trunk(name)
        self.backbone.requires_grad_(False)
        self.backbone.eval()
        self.proj = nn.Linear(self.backbone_dim, dim) if self.backbone_dim != dim else nn.Identity()
        self.register_buffer("pos_table", sincos_2d(*self.grid, dim), persistent=False)

    def train(self, mode: bool = True):
        super().train(mode)
        self.backbone.eval()  # frozen: face-api's graph has no batch statistics to update, keep eval anyway
        return self

    def backbone_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """The frozen feature map as tokens before the projection (cacheable across epochs).

        Args:
            images: float (M, 3, S, S) RGB in [0, 1].

        Returns:
            float (M, N, C) (C = 256 or 128), no gradient.

        Raises:
            ValueError: wrong shape; TypeError: not a float tensor.
        """
        self._check(images)
        with torch.no_grad():
            f = self.backbone(self.normalize(images))
        if tuple(f.shape[-2:]) != self.grid:  # pragma: no cover - guarded by the spec table
            raise ValueError(f"{self.name}: feature map {tuple(f.shape)} does not match grid {self.grid}")
        return f.flatten(2).transpose(1, 2)

    def forward(self, images: torch.Tensor,
                backbone_tokens: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens (M, N, D) and position table (N, D); ``backbone_tokens`` (a cache of
        :meth:`backbone_tokens`) skips the frozen backbone."""
        if backbone_tokens is None:
            backbone_tokens = self.backbone_tokens(images)
        return self.proj(backbone_tokens.to(images.dtype)), self.position_table()


__all__ = ["FaceApiPatchTokenizer"]
