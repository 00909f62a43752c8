"""Image backbones and heads for trainable AU models (pure ``nn.Module``s; no Lightning).

FaceFlow (tensorsense/faceflow, DIGEST §2.2) used a timm ``features_only`` ConvNeXt-V2 and a 1×1-conv head on the
last map. Here:

* :class:`TimmBackbone` — any timm model by name, either ``features_only=True`` with pooled feature maps of one or
  several stages (``out_indices``) concatenated, or ``features_only=False`` (``num_classes=0``: the model's own
  pooled features). The backbone owns its normalisation: input is RGB float in [0, 1], (B, 3, H, W); the timm
  ``pretrained_cfg`` mean/std are applied inside.
* :class:`FaceApiBackbone` — mien's shipped face-api ``FaceFeatureExtractor`` (offline, no download): input RGB
  [0, 1] of any size is resized to 112², scaled to [0, 255] and normalised as face-api does; 256-d pooled output.
* :class:`AUNet` — backbone + occurrence head (B, A) logits + optional intensity head: ``"regression"`` (B, A)
  in [0, 1] (sigmoid) or ``"ordinal"`` (B, A, L) thermometer logits (level k logit = "intensity > k / L").
* :class:`AUInference` — the exported graph: (B, 3, S, S) float [0, 1] -> probabilities (B, A) [and intensity
  (B, A) in [0, 1]].

Shapes: B images, A AUs, H×W input pixels, L ordinal levels, D = sum of pooled stage widths.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["AUInference", "AUNet", "FaceApiBackbone", "TimmBackbone", "build_backbone", "decode_ordinal"]


class TimmBackbone(nn.Module):
    """A timm model as a pooled feature extractor.

    Args:
        name: timm model name (e.g. ``"resnet10t"``, ``"convnextv2_nano.fcmae_ft_in22k_in1k"``).
        pretrained: load timm's pretrained weights (downloads from the Hugging Face hub unless cached;
            use False offline/in tests).
        features_only: True: ``timm.create_model(..., features_only=True, out_indices=...)`` and global average
            pooling of each returned map; False: ``num_classes=0`` (the model's own pooled head input).
        out_indices: stages to use with ``features_only`` (negative = from the end; default: last stage only).
        in_chans: input channels given to timm (3).

    Attributes:
        level_dims: width of each pooled level; ``out_dim`` = their sum (D).

    Input (B, 3, H, W) float RGB in [0, 1]; :meth:`levels` returns a list of (B, C_l) pooled features and
    ``forward`` their concatenation (B, D).
    """

    def __init__(self, name: str = "resnet10t", pretrained: bool = False, features_only: bool = True,
                 out_indices: Sequence[int] | None = None, in_chans: int = 3):
        super().__init__()
        import timm

        self.features_only = features_only
        if features_only:
            probe = timm.create_model(name, pretrained=False, features_only=True)
            n = len(probe.feature_info.channels())
            idx = tuple(i % n for i in (out_indices if out_indices is not None else (-1,)))
            all_idx = list(range(n))
            del probe
            self.model = timm.create_model(name, pretrained=pretrained, features_only=True,
                                           out_indices=tuple(all_idx[i] for i in idx), in_chans=in_chans)
            self.level_dims = list(self.model.feature_info.channels())
        else:
            self.model = timm.create_model(name, pretrained=pretrained, num_classes=0, in_chans=in_chans)
            self.level_dims = [int(self.model.num_features)]
        cfg = getattr(self.model, "pretrained_cfg", None) or {}
        mean = cfg.get("mean", (0.485, 0.456, 0.406))
        std = cfg.get("std", (0.229, 0.224, 0.225))
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.out_dim = int(sum(self.level_dims))
        self._nhwc = str(getattr(self.model, "output_fmt", "NCHW")).upper().endswith("NHWC")

    def levels(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Pooled features per level: list of (B, C_l) float tensors from (B, 3, H, W) RGB in [0, 1]."""
        x = (x - self.mean) / self.std
        if not self.features_only:
            return [self.model(x)]
        out = []
        for f in self.model(x):
            if f.ndim == 4 and self._nhwc:
                f = f.permute(0, 3, 1, 2)  # NHWC feature maps (e.g. Swin)
            out.append(f.mean((2, 3)) if f.ndim == 4 else f.mean(1))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) float RGB [0, 1] -> (B, D) float pooled features."""
        return torch.cat(self.levels(x), 1)


class FaceApiBackbone(nn.Module):
    """mien's face-api ``FaceFeatureExtractor`` (Vincent Mühler / vladmandic, MIT) as an AU backbone.

    Args:
        pretrained: load the shipped expression-net weights (``mien/assets/faceapi``; no download);
            False = random initialisation.

    Input (B, 3, H, W) float RGB in [0, 1] (any H, W; bilinearly resized to 112²); output (B, 256) float,
    non-negative (the embedding of :meth:`mien.models.faceapi.nets.FaceExpressionNet.embed`).
    """

    level_dims = [256]
    out_dim = 256

    def __init__(self, pretrained: bool = True):
        super().__init__()
        from mien.models.faceapi.nets import MEAN_RGB, FaceFeatureExtractor

        if pretrained:
            from mien.models.faceapi import load_expression_net

            self.features = load_expression_net().features.train()
        else:
            self.features = FaceFeatureExtractor()
        self.register_buffer("mean_rgb", torch.tensor(MEAN_RGB, dtype=torch.float32).view(1, 3, 1, 1),
                             persistent=False)

    def levels(self, x: torch.Tensor) -> list[torch.Tensor]:
        """[(B, 256)] pooled face-api features of float (B, 3, H, W) RGB in [0, 1] (resized to 112²)."""
        if x.shape[-2:] != (112, 112):
            x = F.interpolate(x, size=(112, 112), mode="bilinear", align_corners=False)
        x = (x * 255.0 - self.mean_rgb) / 255.0
        return [self.features(x).flatten(1)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.levels(x)[0]


def build_backbone(name: str, pretrained: bool = False, features_only: bool = True,
                   out_indices: Sequence[int] | None = None) -> nn.Module:
    """``"faceapi"`` -> :class:`FaceApiBackbone`; any other name -> :class:`TimmBackbone`."""
    if name == "faceapi":
        return FaceApiBackbone(pretrained=pretrained)
    return TimmBackbone(name, pretrained=pretrained, features_only=features_only, out_indices=out_indices)


def decode_ordinal(logits: torch.Tensor) -> torch.Tensor:
    """Ordinal thermometer logits (B, A, L) -> expected intensity (B, A) in [0, 1] = mean_k σ(logit_k)."""
    return torch.sigmoid(logits).mean(-1)


class AUNet(nn.Module):
    """Backbone + AU heads.

    Args:
        backbone: a module with ``levels(x)`` and ``out_dim`` (:func:`build_backbone`).
        num_aus: A.
        intensity: ``"none"``, ``"regression"`` (sigmoid output in [0, 1] = FACS intensity / 5) or ``"ordinal"``
            (L logits per AU; target level k is ``intensity > k / L``, i.e. FACS ≥ k+1 for L = 5).
        ordinal_levels: L.
        dropout: dropout before the heads.

    ``forward(x)`` returns ``{"occ": (B, A) logits, "int": (B, A) [0, 1] | (B, A, L) logits (if any),
    "levels": list of (B, C_l) pooled features}``.
    """

    def __init__(self, backbone: nn.Module, num_aus: int, intensity: str = "none", ordinal_levels: int = 5,
                 dropout: float = 0.0):
        super().__init__()
        if intensity not in ("none", "regression", "ordinal"):
            raise ValueError(f"intensity must be none|regression|ordinal, got {intensity!r}")
        self.backbone, self.num_aus, self.intensity, self.levels_n = backbone, num_aus, intensity, ordinal_levels
        d = backbone.out_dim
        self.drop = nn.Dropout(dropout)
        self.occ_head = nn.Linear(d, num_aus)
        self.int_head = None
        if intensity == "regression":
            self.int_head = nn.Linear(d, num_aus)
        elif intensity == "ordinal":
            self.int_head = nn.Linear(d, num_aus * ordinal_levels)

    def forward(self, x: torch.Tensor) -> dict:
        """float (B, 3, S, S) RGB in [0, 1] → {"occ": (B, A) logits, "levels": backbone features, and "int":
        (B, A) in [0, 1] (regression) or (B, A, L) ordinal logits when the net has an intensity head}."""
        levels = self.backbone.levels(x)
        h = self.drop(torch.cat(levels, 1))
        out = {"occ": self.occ_head(h), "levels": levels}
        if self.intensity == "regression":
            out["int"] = torch.sigmoid(self.int_head(h))
        elif self.intensity == "ordinal":
            out["int"] = self.int_head(h).unflatten(1, (self.num_aus, self.levels_n))
        return out

    def intensity_01(self, out: dict) -> torch.Tensor | None:
        """Predicted intensity (B, A) in [0, 1] (×5 = FACS units) from ``forward``'s output, or None."""
        if self.intensity == "regression":
            return out["int"]
        if self.intensity == "ordinal":
            return decode_ordinal(out["int"])
        return None


class AUInference(nn.Module):
    """Export/inference graph: (B, 3, S, S) float RGB [0, 1] -> ``probs`` (B, A) [, ``intensity`` (B, A) in [0, 1]]."""

    def __init__(self, net: AUNet):
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor):
        out = self.net(image)
        probs = torch.sigmoid(out["occ"])
        inten = self.net.intensity_01(out)
        return probs if inten is None else (probs, inten)
