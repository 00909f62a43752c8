"""Losses of the SMIRK/TEASER task: landmark reprojection, face-api perceptual and emotion consistency,
coefficient regularisers, and the expression augmentation of the cycle path (DIGEST §5.3)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from mien.models.face3d.base import FaceModel
from mien.models.face3d.params import Face3DParams, project
from mien.tasks.face3d.config import CycleConfig

__all__ = ["FaceApiFeatures", "augment_expressions", "coefficient_std", "expression_templates", "landmark_loss"]

MESH_POINTS = 468  # MediaPipe face-mesh points; the 10 iris points carry gaze, which the face models lack


def landmark_loss(face_model: FaceModel, params: Face3DParams, target: torch.Tensor) -> torch.Tensor:
    """MSE between the model's projected MediaPipe landmarks and ``target`` (B, 478, ≥2) crop-normalised
    coordinates ([−1, 1]), over the mesh points the model embeds (not the irises)."""
    n, verts = project(face_model, params)
    lm = face_model.landmarks(n)  # (B, L, 3); rows = embedding.landmark_ids
    ids = torch.as_tensor(face_model.embedding.landmark_ids, device=n.device)
    keep = ids < MESH_POINTS
    return F.mse_loss(lm[:, keep, :2], target[:, ids[keep], :2])


def coefficient_std(face_model: FaceModel, key: str, n: int) -> np.ndarray:
    """Per-component std of ``shape``/``expression`` coefficients (``mien-face``: the training data's; FLAME: 1)."""
    std = getattr(face_model, f"{key}_std", None)
    return np.ones(n, np.float32) if std is None else np.maximum(np.asarray(std, np.float32)[:n], 1e-6)


def expression_templates(face_model: FaceModel, n_expression: int) -> np.ndarray | None:
    """Expression templates (K, E) in coefficient units: the AU directions of :func:`mien.models.face3d.au_directions`
    (py-feat's PLS, MIT) projected on ``mien-face``'s orthonormal expression basis at intensity 1 — a licence-clean
    stand-in for SMIRK's FaMoS templates; None for models without an expression basis (FLAME)."""
    arrays = getattr(face_model, "arrays", None)
    if arrays is None or "expression_basis" not in arrays or face_model.n_vertices != 478:
        return None
    from mien.models.face3d.au import au_directions

    W = np.asarray(arrays["expression_basis"], np.float64)[:n_expression].reshape(n_expression, -1)
    dirs = np.stack([d.reshape(-1) for d in au_directions().values()]).astype(np.float64)
    return (dirs @ W.T).astype(np.float32)


def augment_expressions(p: Face3DParams, cfg: CycleConfig, expr_std: torch.Tensor,
                        templates: torch.Tensor | None, generator: torch.Generator | None = None) -> Face3DParams:
    """A copy of ``p`` (detached) with new expressions, jaws and eyelids for the cycle path (SMIRK ``step2``).

    Args:
        p: the encoder's parameters (B faces). cfg: :class:`CycleConfig`. expr_std: (E,) coefficient stds (the
            augmentation works in unit-variance units). templates: (K, E) or None.

    Returns:
        :class:`Face3DParams` (shape, pose, camera and tokens detached copies of ``p``'s).
    """
    p = p.detach()
    b, e = p.expression.shape
    dev = p.expression.device

    def rand(*s):
        return torch.rand(*s, generator=generator).to(dev)

    def randn(*s):
        return torch.randn(*s, generator=generator).to(dev)

    z = p.expression / expr_std
    groups = list(cfg.groups)
    g = torch.randint(len(groups), (b,), generator=generator).to(dev)
    new = z.clone()
    jaw, eyelids = p.jaw.clone(), p.eyelids.clone()
    for gi, name in enumerate(groups):
        sel = g == gi
        if not sel.any():
            continue
        k = int(sel.sum())
        if name == "random":
            mask = (rand(k, e) < cfg.random_prob).float()
            new[sel] = (z[sel] + mask * randn(k, e) * (1 + 2 * rand(k, 1))).clamp(-cfg.clamp, cfg.clamp)
        elif name == "permuted" or (name == "template" and templates is None):
            new[sel] = z[torch.randint(b, (k,), generator=generator).to(dev)] * (0.25 + 1.25 * rand(k, 1))
        elif name == "template":
            t = templates[torch.randint(len(templates), (k,), generator=generator).to(dev)] / expr_std
            new[sel] = t * (0.25 + 1.25 * rand(k, 1))
        elif name == "zero":
            new[sel] = 0.0
            jaw[sel] = 0.0
            eyelids[sel] = rand(k, 2)
        else:
            raise ValueError(f"unknown cycle group {name!r}")
    new = new + cfg.noise * rand(b, 1) * randn(b, e)
    half = (rand(b, 1) < 0.5).float()
    jaw = jaw + half * randn(b, 3) * cfg.jaw_noise * torch.tensor([1.0, 0.1, 0.1], device=dev)
    jaw = torch.cat([jaw[:, :1].clamp_min(0), jaw[:, 1:].clamp(-0.2, 0.2)], 1)
    eyelids = (eyelids + (2 * rand(b, 2) - 1) * cfg.eyelid_jitter).clamp(0, 1)
    return p.replace(expression=new * expr_std, jaw=jaw, eyelids=eyelids)


class FaceApiFeatures(nn.Module):
    """Frozen face-api networks shipped with mien (MIT) as the task's perceptual and emotion feature extractors.

    ``perceptual(x)``: FaceRecognitionNet intermediate feature maps (after the 32/64/128/256-channel stages);
    ``emotion(x)``: FaceExpressionNet's 256-d expression embedding. ``x``: (B, 3, S, S) RGB in [0, 1] (resized
    bilinearly to the nets' 150² / 112² inputs and scaled to 0–255 as they expect).
    """

    def __init__(self, perceptual: bool = True, emotion: bool = True):
        super().__init__()
        from mien.models.faceapi import load_expression_net, load_recognition_net

        self.rec = load_recognition_net().eval().requires_grad_(False) if perceptual else None
        self.expr = load_expression_net().eval().requires_grad_(False) if emotion else None

    def train(self, mode: bool = True):  # frozen: always eval
        return super().train(False)

    @staticmethod
    def _resize(x, s):
        return F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False, antialias=x.shape[-1] > s) * 255.0

    def perceptual(self, x: torch.Tensor) -> list[torch.Tensor]:
        from mien.models.faceapi.nets import _normalize

        r = self.rec
        out = F.max_pool2d(r.conv32_down(_normalize(self._resize(x, r.input_size))), 3, 2)
        feats = []
        for stage in ((r.conv32_1, r.conv32_2, r.conv32_3), (r.conv64_down, r.conv64_1, r.conv64_2, r.conv64_3),
                      (r.conv128_down, r.conv128_1, r.conv128_2), (r.conv256_down, r.conv256_1, r.conv256_2)):
            for layer in stage:
                out = layer(out)
            feats.append(out)
        return feats

    def perceptual_loss(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            ft = self.perceptual(target)
        return sum(F.l1_loss(a, b) for a, b in zip(self.perceptual(x), ft, strict=True)) / len(ft)

    def emotion(self, x: torch.Tensor) -> torch.Tensor:
        return self.expr.embed(self._resize(x, self.expr.input_size))
