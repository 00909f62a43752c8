"""AU training losses (occurrence targets 0/1 with a mask for uncoded labels; masked entries never contribute).

* :func:`bce_loss` — binary cross-entropy with logits; :func:`balanced_pos_weight` weighs each AU's positives by
  #neg/#pos of the training split, clamped to [1, cap].
* :func:`sigmoid_focal_loss` — FL = −α_t (1 − p_t)^γ log p_t (Lin et al. 2017, "Focal Loss for Dense Object
  Detection"); ``alpha=None``/negative disables α; γ = 0 and no α equals BCE.
* :class:`DistributionBalancedLoss` — Wu et al. 2020, "Distribution-Balanced Loss for Multi-Label Classification
  in Long-Tailed Datasets": re-balancing weight r̂ = α + σ(β(r − μ)) with r_ik = (1/n_k) / Σ_{j∈y_i} 1/n_j, and
  negative-tolerant regularisation (logits shifted by ν_k = −κ log(N/n_k − 1), negatives scaled by λ, their
  weights by 1/λ), with focal modulation. Class counts come from the training split
  (:meth:`mien.tasks.au.AUDataModule.class_counts`) — FaceFlow's dataset never provided them.
* intensity: regression = masked L1 on [0, 1] targets (FACS / 5); ordinal = masked BCE on thermometer targets
  (:func:`ordinal_targets`). FaceFlow never normalised FACS 0–5, so its ordinal targets saturated; here they do not.
* semi-supervised: FixMatch (Sohn et al. 2020) multilabel pseudo-labels from the weak view where σ(z_w) ≥ τ or
  ≤ 1 − τ, BCE of the strong view against them, averaged over **all** entries (:func:`fixmatch_unlabeled_loss`).
* :class:`MIRORegularizer` (Cha et al. 2022, "Domain Generalization by Mutual-Information Regularization with
  Pre-trained Models"): a frozen copy of the initial backbone gives z₀ per level; mean encoder = identity,
  variance encoder = softplus(b) + ε per channel (init 0.1); reg = Σ_levels mean_{B,C}(log σ² + (z₀ − z)² / σ²) / 2.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "DistributionBalancedLoss",
    "MIRORegularizer",
    "balanced_pos_weight",
    "bce_loss",
    "fixmatch_pseudo_labels",
    "fixmatch_unlabeled_loss",
    "masked_mean",
    "ordinal_targets",
    "sigmoid_focal_loss",
]


def masked_mean(loss: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``loss`` over entries where ``mask`` (same shape, 1 = use) is set (all when None); 0 when none."""
    if mask is None:
        return loss.mean()
    mask = mask.to(loss.dtype)
    return (loss * mask).sum() / mask.sum().clamp_min(1.0)


def bce_loss(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None,
             pos_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Masked mean binary cross-entropy with logits. logits, target, mask: (B, A) (mask 1 = coded). Scalar.

    ``pos_weight`` (A,): weight of the positive term per AU (as ``torch.nn.BCEWithLogitsLoss``; e.g.
    #neg / #pos of the training data, see :func:`balanced_pos_weight`).
    """
    pw = None if pos_weight is None else pos_weight.to(logits)
    return masked_mean(F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype), reduction="none",
                                                           pos_weight=pw), mask)


def balanced_pos_weight(pos_counts, neg_counts, cap: float = 20.0) -> torch.Tensor:
    """Per-AU positive weight #neg / #pos clamped to [1, ``cap``]: float32 (A,) from (A,) label counts
    (#pos floored at 1). With it, BCE weighs an AU's rare positives like its negatives, at most ``cap``×."""
    pos = torch.as_tensor(np.asarray(pos_counts, np.float64), dtype=torch.float32)
    neg = torch.as_tensor(np.asarray(neg_counts, np.float64), dtype=torch.float32)
    return (neg / pos.clamp_min(1.0)).clamp(1.0, float(cap))


def sigmoid_focal_loss(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None,
                       alpha: float | None = 0.25, gamma: float = 2.0) -> torch.Tensor:
    """Masked mean sigmoid focal loss (Lin et al. 2017): −α_t (1 − p_t)^γ log p_t.

    Args:
        logits, target, mask: (B, A) float; target 0/1; mask 1 = use.
        alpha: weight of positives (negatives get 1 − α); None or < 0 = no weighting.
        gamma: focusing parameter ≥ 0 (0 and no α = BCE).

    Returns:
        scalar tensor.
    """
    t = target.to(logits.dtype)
    ce = F.binary_cross_entropy_with_logits(logits, t, reduction="none")
    p = torch.sigmoid(logits)
    p_t = p * t + (1 - p) * (1 - t)
    loss = ce * (1 - p_t).pow(gamma) if gamma else ce
    if alpha is not None and alpha >= 0:
        loss = loss * (alpha * t + (1 - alpha) * (1 - t))
    return masked_mean(loss, mask)


class DistributionBalancedLoss(nn.Module):
    """Distribution-balanced loss for multi-label classification (Wu et al. 2020; FaceFlow ``lib/losses/db.py``).

    Args:
        pos_counts, neg_counts: (A,) positive / negative label counts of the training data (n_k, N − n_k).
        alpha, beta, mu: smoothing r̂ = α + σ(β(r − μ)) (paper: 0.1, 10, 0.2).
        gamma: focal γ (2).
        neg_scale: λ of the negative-tolerant regularisation (2).
        init_bias: κ of the class-prior logit shift ν_k = −κ·log(N/n_k − 1) / λ (0.05).

    ``forward(logits (B, A), target (B, A) 0/1, mask (B, A) | None) -> scalar``; :meth:`weights` returns the
    (B, A) re-balancing weights r̂.
    """

    def __init__(self, pos_counts, neg_counts, alpha: float = 0.1, beta: float = 10.0, mu: float = 0.2,
                 gamma: float = 2.0, neg_scale: float = 2.0, init_bias: float = 0.05):
        super().__init__()
        pos = torch.as_tensor(np.asarray(pos_counts, np.float64), dtype=torch.float32).clamp_min(1.0)
        neg = torch.as_tensor(np.asarray(neg_counts, np.float64), dtype=torch.float32).clamp_min(1.0)
        self.alpha, self.beta, self.mu, self.gamma, self.neg_scale = alpha, beta, mu, gamma, neg_scale
        self.freq_inv = 1.0 / pos
        self.bias = -torch.log((pos + neg) / pos - 1.0) * init_bias / neg_scale

    def weights(self, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """r̂ (B, A): large for rare classes of a sample, small for common ones it co-occurs with."""
        t = target.float() if mask is None else target.float() * mask.float()
        fi = self.freq_inv.to(t.device)
        repeat = (t * fi).sum(1, keepdim=True)
        # a sample without positives is never over-sampled: its rate is that of one of the rarest classes
        repeat = torch.where(repeat > 0, repeat, fi.max().expand_as(repeat))
        return self.alpha + torch.sigmoid(self.beta * (fi / repeat - self.mu))

    def forward(self, logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        t = target.to(logits.dtype)
        w = self.weights(t, mask).to(logits.dtype)
        z = logits + self.bias.to(logits)
        z = z * (1 - t) * self.neg_scale + z * t
        w = w / self.neg_scale * (1 - t) + w * t
        ce = F.binary_cross_entropy_with_logits(z, t, reduction="none")
        p_t = torch.exp(-ce)
        loss = w * (1 - p_t).pow(self.gamma) * ce if self.gamma else w * ce
        return masked_mean(loss, mask)


def ordinal_targets(intensity01: torch.Tensor, levels: int) -> torch.Tensor:
    """Thermometer code: (B, A) intensities in [0, 1] -> (B, A, L) float, level k = [intensity ≥ (k+1)/L].

    With L = 5 and intensity = FACS / 5, level k is "FACS intensity ≥ k + 1".
    """
    thr = torch.arange(1, levels + 1, device=intensity01.device, dtype=intensity01.dtype) / levels
    return (intensity01[..., None] >= thr - 1e-6).to(intensity01.dtype)


def fixmatch_pseudo_labels(logits_weak: torch.Tensor, threshold: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """Multilabel FixMatch pseudo-labels (FaceFlow, after Sohn et al. 2020).

    Args:
        logits_weak: (B, A) logits of the weakly augmented view (detached here).
        threshold: τ in (0.5, 1]; an entry is confident when σ(z) ≥ τ (pseudo 1) or σ(z) ≤ 1 − τ (pseudo 0).

    Returns:
        ``(pseudo, mask)``: (B, A) float 0/1 each; ``pseudo = [σ(z) ≥ 0.5]``, ``mask`` = confident.
    """
    p = torch.sigmoid(logits_weak.detach().float())
    mask = ((p >= threshold) | (p <= 1 - threshold)).to(logits_weak.dtype)
    return (p >= 0.5).to(logits_weak.dtype), mask


def fixmatch_unlabeled_loss(logits_strong: torch.Tensor, logits_weak: torch.Tensor,
                            threshold: float = 0.95) -> torch.Tensor:
    """FixMatch unsupervised loss: mean over all B·A entries of mask · BCE(z_strong, pseudo(z_weak)).

    Dividing by all entries (not the confident ones) follows FixMatch: the loss fades while few are confident.
    """
    pseudo, mask = fixmatch_pseudo_labels(logits_weak, threshold)
    ce = F.binary_cross_entropy_with_logits(logits_strong, pseudo, reduction="none")
    return (ce * mask).mean()


class MIRORegularizer(nn.Module):
    """MIRO's mutual-information regulariser (Cha et al. 2022; FaceFlow ``lib/miro.py``) on pooled features.

    Args:
        level_dims: channel width C_l of each feature level.
        init_var: initial variance σ² (softplus(b) + ε = init_var).
        eps: ε.

    ``forward(feats, feats_frozen)``: lists of (B, C_l) features of the trained and the frozen initial backbone
    -> scalar Σ_l mean(log σ_l² + (z₀ − z)² / σ_l²) / 2 (mean encoder = identity; σ_l² learned per channel).
    """

    def __init__(self, level_dims: Sequence[int], init_var: float = 0.1, eps: float = 1e-5):
        super().__init__()
        b0 = math.log(math.expm1(init_var - eps))
        self.log_b = nn.ParameterList([nn.Parameter(torch.full((int(c),), b0)) for c in level_dims])
        self.eps = eps

    def forward(self, feats: Sequence[torch.Tensor], feats_frozen: Sequence[torch.Tensor]) -> torch.Tensor:
        if len(feats) != len(self.log_b) or len(feats_frozen) != len(self.log_b):
            raise ValueError(f"MIRO: expected {len(self.log_b)} feature levels, got {len(feats)}/{len(feats_frozen)}")
        total = feats[0].new_zeros(())
        for z, z0, b in zip(feats, feats_frozen, self.log_b, strict=True):
            var = F.softplus(b) + self.eps
            total = total + 0.5 * (var.log() + (z0.detach() - z).pow(2) / var).mean()
        return total

