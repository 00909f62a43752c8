"""Losses of the reenactment task: region-weighted multi-scale L1, face-api perceptual / identity / expression
terms (frozen networks that ship with mien, no download), hinge GAN with feature matching, and MegaPortraits'
contrastive cross-reenactment loss (with the sign that makes minimising it pull positives together; the seed
returned +log and then overwrote it, DIGEST §3.3).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mien.face import landmarks as L

__all__ = ["FaceApiLoss", "cross_contrastive", "d_hinge", "feature_matching", "g_hinge", "multiscale_l1",
           "region_weights"]


def region_weights(landmarks: torch.Tensor, crop: int, size: int, eye: float, mouth: float,
                   pad: float = 0.3) -> torch.Tensor:
    """Per-pixel loss weights (B, 1, size, size): 1 + ``eye`` inside each eye box + ``mouth`` inside the mouth box
    (boxes: :func:`mien.face.landmarks.region_box_masks`).

    Args:
        landmarks: (B, 478, ≥2) MediaPipe landmarks in the pixels of a ``crop``-sized crop.
        pad: boxes grown by this fraction of their size on each side.
    """
    lm = landmarks[..., :2].float() * (size / crop)
    gains = [(idx, g) for idx, g in ((L.EYE_LEFT, eye), (L.EYE_RIGHT, eye), (L.LIPS_OUTER, mouth)) if g]
    boxes = L.region_box_masks(lm, [idx for idx, _ in gains], size, pad)
    w = torch.ones(lm.shape[0], size, size, device=lm.device, dtype=lm.dtype)
    for k, (_, gain) in enumerate(gains):
        w = w + gain * boxes[:, k].to(w.dtype)
    return w.unsqueeze(1)


def multiscale_l1(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None,
                  scales: int = 3) -> torch.Tensor:
    """Mean over scales (1, ½, ¼ …, average pooling) of the weighted mean absolute error."""
    total = pred.new_zeros(())
    for i in range(scales):
        if i:
            pred, target = F.avg_pool2d(pred, 2), F.avg_pool2d(target, 2)
            weight = F.avg_pool2d(weight, 2) if weight is not None else None
        err = (pred - target).abs()
        total = total + ((err * weight).sum() / (weight.sum() * err.shape[1]) if weight is not None else err.mean())
    return total / scales


def d_hinge(real: list, fake: list) -> torch.Tensor:
    """Discriminator hinge loss over scales: mean relu(1 − D(real)) + mean relu(1 + D(fake)) (on logits)."""
    return sum(F.relu(1 - r[0]).mean() + F.relu(1 + f[0]).mean() for r, f in zip(real, fake, strict=True)) / len(real)


def g_hinge(fake: list) -> torch.Tensor:
    """Generator hinge loss over scales: −mean D(fake)."""
    return sum(-f[0].mean() for f in fake) / len(fake)


def feature_matching(real: list, fake: list) -> torch.Tensor:
    """L1 between discriminator features of fake and (detached) real images, averaged over layers and scales."""
    terms = [(ff - rf.detach()).abs().mean() for r, f in zip(real, fake, strict=True) for rf, ff in zip(r[1], f[1], strict=True)]
    return sum(terms) / len(terms)


def cross_contrastive(anchors: list[torch.Tensor], positive: torch.Tensor, negative: torch.Tensor,
                      scale: float = 5.0, margin: float = 0.2) -> torch.Tensor:
    """MegaPortraits' cross-reenactment loss (§3.1, CosFace-style), a quantity to MINIMISE.

    For each anchor a (expression latent of an output driven by d: the self- and the cross-reenacted image),
    ``−log( e^{s(cos(a, z_d) − m)} / (e^{s(cos(a, z_d) − m)} + e^{s·cos(a, z_d*)}) )`` with ``z_d`` the driver's
    latent (positive) and ``z_d*`` another driver's (negative); averaged over anchors and rows.

    Args:
        anchors: (B, Z) latents; positive, negative: (B, Z).
    """
    losses = []
    for a in anchors:
        pos = scale * (F.cosine_similarity(a, positive, dim=1) - margin)
        neg = scale * F.cosine_similarity(a, negative, dim=1)
        losses.append(-(pos - torch.logsumexp(torch.stack([pos, neg], 1), 1)))
    return torch.cat(losses).mean()


class FaceApiLoss(nn.Module):
    """Frozen face-api nets (shipped with mien): perceptual features and descriptor of FaceRecognitionNet,
    embedding of FaceExpressionNet. Images are (B, 3, H, W) float RGB [0, 1], resized to 150² / 112².

    Args:
        pretrained: load the shipped weights (False: random init, for tests of the plumbing only).
        perceptual_stages: recognition-net stages (1–4) whose feature maps the perceptual term compares; with
            fewer than 4 and no identity term, :meth:`recognition` stops early (cheaper).
    """

    def __init__(self, pretrained: bool = True, perceptual_stages: int = 4):
        super().__init__()
        from mien.models.faceapi import nets

        if pretrained:
            from mien.models.faceapi import load_expression_net, load_recognition_net

            self.rec, self.expr = load_recognition_net(), load_expression_net()
        else:
            self.rec, self.expr = nets.FaceRecognitionNet(), nets.FaceExpressionNet()
        self._normalize = nets._normalize
        self.perceptual_stages = int(perceptual_stages)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True):  # always frozen in eval mode
        return super().train(False)

    def recognition(self, x: torch.Tensor, descriptor: bool = True) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """(feature maps of the first ``perceptual_stages`` stages, descriptor (B, 128) or None when
        ``descriptor`` is False)."""
        r = self.rec
        h = F.interpolate(x.float(), size=150, mode="bilinear", align_corners=False, antialias=True) * 255
        h = F.max_pool2d(r.conv32_down(self._normalize(h)), 3, 2)
        feats = []
        stages = ((r.conv32_1, r.conv32_2, r.conv32_3), (r.conv64_down, r.conv64_1, r.conv64_2, r.conv64_3),
                  (r.conv128_down, r.conv128_1, r.conv128_2), (r.conv256_down, r.conv256_1, r.conv256_2))
        for i, stage in enumerate(stages):
            if i >= self.perceptual_stages and not descriptor:
                return feats, None
            for layer in stage:
                h = layer(h)
            if i < self.perceptual_stages:
                feats.append(h)
        h = r.conv256_down_out(h)
        return feats, r.fc(h.mean(dim=(2, 3)))

    def expression(self, x: torch.Tensor) -> torch.Tensor:
        """FaceExpressionNet embedding (B, 256)."""
        h = F.interpolate(x.float(), size=112, mode="bilinear", align_corners=False, antialias=True) * 255
        return self.expr.embed(h)

    @staticmethod
    def perceptual(fa: list[torch.Tensor], fb: list[torch.Tensor]) -> torch.Tensor:
        return sum((a - b).abs().mean() for a, b in zip(fa, fb, strict=True)) / len(fa)

    @staticmethod
    def identity(da: torch.Tensor, db: torch.Tensor) -> torch.Tensor:
        return (1 - F.cosine_similarity(da, db, dim=1)).mean()
