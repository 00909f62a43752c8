"""Losses of the expression tokenizer and predictor tasks (seed 1 ``ExpressionReconstructionLoss`` /
``ExpressionPredictionLoss_v2``, DIGEST §1.3, plus mien's extensions), batched over clips (B, T).

* reconstruction helpers: :func:`motion_weights`, :class:`PerceptualLoss` (L1 between feature maps of a frozen
  timm net);
* temporal: :func:`temporal_losses` (coherence mean_t(1 − cos(z_t, z_{t+1})), contrast mean_t |cos(z_t, z_{t+s})|);
* :func:`diversity_loss` (within clip, or over the batch), :func:`variance_loss` (within-clip variance hinge);
* :func:`prediction_losses` (next-token prediction); :func:`similarity_stats` (logged token statistics);
* :class:`ExpressionNetLoss` — expression agreement of a rendering with its target through face-api's frozen
  FaceExpressionNet (feature-map and emotion terms; issue 9).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["ExpressionNetLoss", "PerceptualLoss", "diversity_loss", "motion_weights", "prediction_losses", "similarity_stats",
           "temporal_losses", "variance_loss"]


def temporal_losses(tokens: torch.Tensor, stride: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """Temporal coherence and contrast of unit-norm tokens (B, T, D) → two scalars.

    coherence = mean over clips and t of 1 − cos(z_t, z_{t+1}) (0 if T < 2);
    contrast = mean of |cos(z_t, z_{t+stride})| (0 if T ≤ stride). Source: seed 1 DIGEST §1.3.
    """
    zero = tokens.new_zeros(())
    t = tokens.shape[1]
    coherence = (1 - (tokens[:, 1:] * tokens[:, :-1]).sum(-1)).mean() if t > 1 else zero
    contrast = (tokens[:, stride:] * tokens[:, :-stride]).sum(-1).abs().mean() if t > stride else zero
    return coherence, contrast


def diversity_loss(tokens: torch.Tensor, stride: int = 5, scope: str = "clip") -> torch.Tensor:
    """Mean off-diagonal cosine of the sampled tokens z[:, ::stride], clamped ≥ 0.

    scope "clip" (seed 1): within each clip, then mean over clips. scope "batch" (mien extension): over all
    sampled tokens of the batch together, so tokens of different clips/subjects are pushed apart as well (the
    clip scope alone lets every token of every clip collapse onto one vector).

    tokens: (B, T, D) unit norm → scalar in [0, 1]; 0 when fewer than 2 tokens are sampled.

    Raises:
        ValueError: unknown scope.
    """
    if scope not in ("clip", "batch"):
        raise ValueError(f"scope must be 'clip' or 'batch', got {scope!r}")
    z = tokens[:, ::stride]
    if scope == "batch":
        z = z.reshape(1, -1, z.shape[-1])
    n = z.shape[1]
    if n < 2:
        return tokens.new_zeros(())
    s = z @ z.transpose(1, 2)
    off = (s.sum((1, 2)) - s.diagonal(dim1=1, dim2=2).sum(-1)) / (n * (n - 1))
    return off.clamp(min=0).mean()


def variance_loss(tokens: torch.Tensor, target: float = 0.1, eps: float = 1e-4) -> torch.Tensor:
    """Within-clip variance hinge (mien extension, after VICReg's variance term — Bardes et al. 2022,
    "VICReg: Variance-Invariance-Covariance Regularization for Self-Supervised Learning", applied over time).

    mean over clips and dims of relu(target − sqrt(var_t(z) + eps)). The seed's coherence term alone is minimised
    by one constant token per clip, and batch diversity is then met by tokens that encode the subject; this term
    keeps tokens varying within a clip, and the reconstruction decides what the variation encodes.

    tokens: (B, T, D) unit norm → scalar ≥ 0; 0 when T < 2.
    """
    if tokens.shape[1] < 2:
        return tokens.new_zeros(())
    std = torch.sqrt(tokens.var(1, unbiased=False) + eps)
    return F.relu(target - std).mean()


def motion_weights(frames: torch.Tensor, gain: float = 4.0, eps: float = 1e-3) -> torch.Tensor:
    """Per-pixel reconstruction weights that emphasise what changes within a clip (mien extension).

    d = mean over RGB of |x_t − mean_t x| per clip; w = 1 + gain · d / mean(d) (mean over the clip's pixels), so a
    pixel that moves as much as the clip's average gets weight 1 + gain and a static one 1. Expression lives in
    the few pixels that move (mouth, eyes, brows); with uniform MSE a decoder reaches a good loss by drawing each
    subject's mean face and the expression token is never needed. Detached (no gradient).

    frames: float (B, T, 3, H, W) in [0, 1] → float (B, T, 1, H, W) ≥ 1; all ones when T < 2 or gain = 0.
    """
    b, t = frames.shape[:2]
    if t < 2 or gain == 0:
        return frames.new_ones(b, t, 1, *frames.shape[-2:])
    with torch.no_grad():
        d = (frames - frames.mean(1, keepdim=True)).abs().mean(2, keepdim=True)
        return 1 + gain * d / (d.mean((1, 2, 3, 4), keepdim=True) + eps)


def similarity_stats(tokens: torch.Tensor) -> dict[str, torch.Tensor]:
    """Within-clip pairwise cosine statistics (mean/std/min/max over all off-diagonal pairs, negatives kept)."""
    t = tokens.shape[1]
    if t < 2:
        return {}
    s = tokens @ tokens.transpose(1, 2)
    iu = torch.triu_indices(t, t, 1, device=tokens.device)
    v = s[:, iu[0], iu[1]].reshape(-1).detach()
    return {"sim_mean": v.mean(), "sim_std": v.std() if v.numel() > 1 else v.new_zeros(()),
            "sim_min": v.min(), "sim_max": v.max()}


class PerceptualLoss(nn.Module):
    """L1 distance between feature maps of a frozen timm network (``features_only``), mean over levels.

    Args:
        name: timm model name (e.g. "vgg16", "resnet18"); weights from timm when ``pretrained``.
        pretrained: load pretrained weights (network access); False gives a random, frozen net (tests).
        out_indices: feature levels compared.
        mean, std: ImageNet normalisation applied to the [0, 1] RGB inputs.

    Forward: ``(pred, target)`` float (M, 3, H, W) in [0, 1] → scalar.
    """

    def __init__(self, name: str = "vgg16", pretrained: bool = True, out_indices: Sequence[int] = (1, 2, 3),
                 mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)):
        super().__init__()
        import timm

        self.net = timm.create_model(name, pretrained=pretrained, features_only=True,
                                     out_indices=tuple(out_indices))
        self.net.requires_grad_(False).eval()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True):
        super().train(mode)
        self.net.eval()
        return self

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        fp = self.net((pred - self.mean) / self.std)
        with torch.no_grad():
            ft = self.net((target - self.mean) / self.std)
        return sum(F.l1_loss(a, b) for a, b in zip(fp, ft, strict=True)) / len(fp)


class ExpressionNetLoss(nn.Module):
    """Expression agreement through face-api's frozen, pretrained FaceExpressionNet (mien extension, issue 9).

    A pixel loss is met by a decoder that draws each subject's mean face from the subject embedding and ignores
    the expression token; this loss measures what a pretrained expression network reads from the rendering:

    * ``feature``: relative squared error of the 7×7×256 ``dense3`` maps, ‖f(pred) − f(target)‖² / ‖f(target)‖²
      (mean over the batch of the per-image sums; 0 for a perfect rendering, 1 for a black-feature one);
    * ``emotion``: KL(p(target) ‖ p(pred)) of face-api's 7 emotion probabilities (nats, mean over images).

    Inputs are float (M, 3, 112, 112) RGB in [0, 1] (face-api's crop; other sizes are resized bilinearly first).
    face-api normalises [0, 255] RGB as (x − MEAN_RGB) / 255, i.e. [0, 1] RGB as x − MEAN_RGB / 255. The network
    is frozen (no parameter gradients, eval mode) but passes gradients to ``pred``.

    Forward: ``(pred, target=None, target_map=None, target_probs=None)`` → ``{"feature", "emotion"}`` scalars;
    the target may be given as its ``dense3`` map (M, 256, 7, 7) / tokens (M, 49, 256) (e.g. the cached tokens
    of a ``faceapi-expression`` tokenizer backbone) instead of images, and ``target_probs`` (M, 7) instead of
    recomputing them.

    Source of the network: face-api (Vincent Mühler / ``@vladmandic/face-api``), MIT; see
    :mod:`mien.models.faceapi`.
    """

    def __init__(self):
        super().__init__()
        from mien.models.faceapi import load_expression_net
        from mien.models.faceapi.nets import MEAN_RGB

        self.net = load_expression_net().requires_grad_(False).eval()
        self.register_buffer("mean", torch.tensor(MEAN_RGB, dtype=torch.float32).view(1, 3, 1, 1) / 255.0,
                             persistent=False)

    def train(self, mode: bool = True):
        super().train(mode)
        self.net.eval()
        return self

    def feature_map(self, images: torch.Tensor) -> torch.Tensor:
        """float (M, 3, S, S) RGB in [0, 1] → float (M, 256, 7, 7) ``dense3`` map (differentiable in the input)."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images (M, 3, H, W), got {tuple(images.shape)}")
        size = self.net.input_size
        if images.shape[-2:] != (size, size):
            images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
        f = self.net.features
        return f.dense3(f.dense2(f.dense1(f.dense0(images - self.mean))))

    def log_probs(self, fmap: torch.Tensor) -> torch.Tensor:
        """(M, 256, 7, 7) map → (M, 7) log emotion probabilities (face-api's 7×7 average pool + fc)."""
        return F.log_softmax(self.net.fc(fmap.mean((2, 3))), dim=1)

    @staticmethod
    def as_map(tokens: torch.Tensor) -> torch.Tensor:
        """(M, 49, 256) backbone tokens (row-major 7×7 grid) → (M, 256, 7, 7)."""
        return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], 7, 7)

    def forward(self, pred: torch.Tensor, target: torch.Tensor | None = None, target_map: torch.Tensor | None = None,
                target_probs: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        fp = self.feature_map(pred)
        if target_map is None:
            if target is None:
                raise ValueError("pass target images or target_map")
            with torch.no_grad():
                target_map = self.feature_map(target)
        target_map = target_map.detach().to(fp.dtype)
        if target_map.ndim == 3:
            target_map = self.as_map(target_map)
        if target_map.shape != fp.shape:
            raise ValueError(f"target map {tuple(target_map.shape)} does not match {tuple(fp.shape)}")
        err = (fp - target_map).square().flatten(1).sum(1)
        feature = (err / target_map.square().flatten(1).sum(1).clamp_min(1e-6)).mean()
        if target_probs is None:
            with torch.no_grad():
                target_probs = self.log_probs(target_map).exp()
        emotion = F.kl_div(self.log_probs(fp), target_probs.detach(), reduction="batchmean")
        return {"feature": feature, "emotion": emotion}


def prediction_losses(tokens: torch.Tensor, predicted: torch.Tensor) -> dict[str, torch.Tensor]:
    """Next-token prediction losses (seed 1 ``ExpressionPredictionLoss_v2``, teacher-forced at every step).

    Args:
        tokens: (B, T, D) unit-norm target tokens.
        predicted: (B, T − 1, D) predictions, ``predicted[:, t]`` for ``tokens[:, t + 1]``.

    Returns:
        prediction = mean(1 − cos(pred, next)); temporal = 1 − mean cos(z_t, z_{t+1}); diversity = mean
        off-diagonal cos over all T tokens of a clip (not clamped, as in the seed).
    """
    prediction = (1 - F.cosine_similarity(predicted, tokens[:, 1:], dim=-1)).mean()
    coherence, _ = temporal_losses(tokens)
    t = tokens.shape[1]
    s = tokens @ tokens.transpose(1, 2)
    div = ((s.sum((1, 2)) - s.diagonal(dim1=1, dim2=2).sum(-1)) / max(t * (t - 1), 1)).mean()
    return {"loss_prediction": prediction, "loss_temporal": coherence, "loss_diversity": div}

