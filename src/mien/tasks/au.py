"""Training of image AU models (FaceFlow done right) with Lightning: :class:`AUTask`, losses, semi-supervised
FixMatch / DeFixMatch, the MIRO regulariser, ONNX export and a loader for inference.

Model (:mod:`mien.models.au.backbone`): any timm backbone (one or several pooled stages) or mien's offline face-api
feature extractor, an occurrence head (B, A) and an optional intensity head (regression in [0, 1] or ordinal).
Or, with ``backbone="features"``, :class:`mien.models.au.head.AUHead` on precomputed per-face feature vectors
(batches ``{"features": (B, D) float32, "occ", "occ_mask", …}`` from ``AUDataModule(input="features")``): the
recipe of mien's shipped default AU model (``--config default``; saved for ``mien analyze`` by
:func:`export_au_head`).

Losses (occurrence targets 0/1 with a mask for uncoded labels; masked entries never contribute):

* ``bce`` — binary cross-entropy with logits; ``pos_weight="balanced"`` weighs each AU's positives by
  #neg/#pos of the training split, clamped to [1, ``pos_weight_cap``].
* ``focal`` — sigmoid focal loss FL = −α_t (1 − p_t)^γ log p_t (Lin et al. 2017, "Focal Loss for Dense Object
  Detection"); ``focal_alpha=None``/negative disables α; γ = 0 and no α equals BCE.
* ``db`` — distribution-balanced loss (Wu et al. 2020, "Distribution-Balanced Loss for Multi-Label Classification
  in Long-Tailed Datasets"): re-balancing weight r̂ = α + σ(β(r − μ)) with r_ik = (1/n_k) / Σ_{j∈y_i} 1/n_j, and
  negative-tolerant regularisation (logits shifted by ν_k = −κ log(N/n_k − 1), negatives scaled by λ, their
  weights by 1/λ), with focal modulation. Class counts come from the training split
  (:meth:`mien.data.au.AUDataModule.class_counts`) — FaceFlow's dataset never provided them.
* intensity: regression = masked L1 on [0, 1] targets (FACS / 5); ordinal = masked BCE on thermometer targets
  [intensity ≥ (k+1)/L]. FaceFlow never normalised FACS 0–5, so its ordinal targets saturated; here they do not.

Semi-supervised (``ssl``): FixMatch (Sohn et al. 2020): multilabel pseudo-labels from the weak view where
σ(z_w) ≥ τ or ≤ 1 − τ, BCE of the strong view against them, averaged over **all** entries (masked ones count as 0).
DeFixMatch (Schmutz et al. 2022, "Don't fear the unlabelled: safe semi-supervised learning via debiasing"):
L = ½(L_sup(weak) + L_sup(strong)) + λ_u (L_u(unlabelled) − L_u(labelled)), the second term being the same
pseudo-label loss on labelled images (the debiasing term).

MIRO (Cha et al. 2022, "Domain Generalization by Mutual-Information Regularization with Pre-trained Models"):
a frozen copy of the initial backbone gives z₀ per level; mean encoder = identity, variance encoder =
softplus(b) + ε per channel (init 0.1); reg = Σ_levels mean_{B,C}(log σ² + (z₀ − z)² / σ²) / 2.

Batches: ``{"image": (B, 3, S, S) float RGB [0, 1], "occ": (B, A), "occ_mask": (B, A), "int": (B, A) [0, 1],
"int_mask": (B, A)}`` (see :mod:`mien.data.au`), or ``{"labeled": that, "unlabeled": {"image": (B_u, 3, S, S)}}``.
Augmentation is done here on the batch (tensor ops, any device): weak = random horizontal flip + translation
(±1/8, reflect padding; labels of unmerged left/right AU columns are swapped for flipped images — FaceFlow did
not); strong = weak + colour jitter, Gaussian noise and a random erased square (cutout).

Validation logs (per AU and macro) with :mod:`mien.metrics.au`: ``val/f1`` (threshold 0.5), ``val/f1_eer``,
``val/ap``, ``val/auc`` and, with an intensity head, ``val/icc``, ``val/pcc``, ``val/mae`` in FACS units (0–5).
"""

from __future__ import annotations

import copy
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from mien.models.au.backbone import AUInference, AUNet, build_backbone

__all__ = [
    "AUTask",
    "AUModelRunner",
    "DistributionBalancedLoss",
    "MIRORegularizer",
    "balanced_pos_weight",
    "bce_loss",
    "cli_main",
    "default_config",
    "export_au_head",
    "export_au_onnx",
    "fixmatch_pseudo_labels",
    "flip_labels",
    "flip_permutation",
    "fixmatch_unlabeled_loss",
    "load_au_model",
    "ordinal_targets",
    "sigmoid_focal_loss",
    "strong_augment",
    "weak_augment",
]

ONNX_METADATA_KEY = "mien_au"


# ------------------------------------------------------------------------------------------------------------
# losses
def _masked_mean(loss: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
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
    return _masked_mean(F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype), reduction="none",
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
    return _masked_mean(loss, mask)


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
        return _masked_mean(loss, mask)


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


# ------------------------------------------------------------------------------------------------------------
# augmentation (tensor ops on (B, 3, H, W) float [0, 1])
def weak_augment(x: torch.Tensor, flip: bool = True, translate: float = 0.125,
                 generator: torch.Generator | None = None, return_flips: bool = False):
    """Random horizontal flip (p = 0.5) and translation up to ``translate``·side (reflect padding), per image.

    Returns the (B, 3, H, W) batch, and with ``return_flips`` also the (B,) bool flip mask (labels of sided AUs
    must be swapped for flipped images: :func:`flip_labels`).
    """
    b, _, h, w = x.shape
    dev = x.device
    f = torch.zeros(b, dtype=torch.bool)
    if flip:
        f = torch.rand(b, device="cpu", generator=generator) < 0.5
        x = torch.where(f.to(dev).view(b, 1, 1, 1), x.flip(-1), x)
    ph, pw = int(round(h * translate)), int(round(w * translate))
    if ph or pw:
        pad = F.pad(x, (pw, pw, ph, ph), mode="reflect")
        oy = torch.randint(0, 2 * ph + 1, (b,), generator=generator)
        ox = torch.randint(0, 2 * pw + 1, (b,), generator=generator)
        x = torch.stack([pad[i, :, oy[i]:oy[i] + h, ox[i]:ox[i] + w] for i in range(b)])
    return (x, f) if return_flips else x


def flip_permutation(names: Sequence[str]) -> list[int] | None:
    """Column permutation that swaps left/right AU columns (``AU12L`` <-> ``AU12R``) under a horizontal image
    flip; None when no column is sided (:func:`mien.data.au.flip_permutation`)."""
    from mien.data.au import flip_permutation as _perm

    return _perm(names)


def flip_labels(batch: dict, flips: torch.Tensor, perm: Sequence[int] | None) -> dict:
    """Swap sided label columns (``occ``, ``occ_mask``, ``int``, ``int_mask``) of the rows in ``flips``."""
    if perm is None or not bool(flips.any()):
        return batch
    out = dict(batch)
    rows = flips.to(batch["occ"].device).view(-1, 1)
    for k in ("occ", "occ_mask", "int", "int_mask"):
        if k in batch:
            out[k] = torch.where(rows, batch[k][:, list(perm)], batch[k])
    return out


def strong_augment(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Photometric + occlusion augmentation of an already weakly augmented batch (same geometry as its input):
    brightness ×[0.6, 1.4], contrast ×[0.6, 1.4], saturation ×[0, 1.5], Gaussian noise σ ≤ 0.05, and one erased
    square (side ¼–½ of the image) per image. Output clamped to [0, 1]."""
    b, _, h, w = x.shape

    def u(lo, hi):
        return (torch.rand(b, 1, 1, 1, generator=generator) * (hi - lo) + lo).to(x)

    x = x * u(0.6, 1.4)
    mean = x.mean((1, 2, 3), keepdim=True)
    x = (x - mean) * u(0.6, 1.4) + mean
    gray = x.mean(1, keepdim=True)
    x = (x - gray) * u(0.0, 1.5) + gray
    x = x + torch.randn(x.shape, generator=generator).to(x) * u(0.0, 0.05)
    side = torch.randint(h // 4, max(h // 2, h // 4 + 1), (b,), generator=generator)
    cy = torch.randint(0, h, (b,), generator=generator)
    cx = torch.randint(0, w, (b,), generator=generator)
    yy = torch.arange(h).view(1, h, 1)
    xx = torch.arange(w).view(1, 1, w)
    half = (side // 2).view(b, 1, 1)
    box = ((yy - cy.view(b, 1, 1)).abs() <= half) & ((xx - cx.view(b, 1, 1)).abs() <= half)
    x = x.masked_fill(box[:, None].to(x.device), 0.5)
    return x.clamp(0, 1)


# ------------------------------------------------------------------------------------------------------------
# task
class AUTask(pl.LightningModule):
    """AU occurrence (+ intensity) training with optional FixMatch/DeFixMatch and MIRO.

    Args:
        au_names: A output names (linked from the data config by :func:`cli_main`).
        backbone: timm model name, ``"faceapi"`` (offline, shipped weights), or ``"features"``: no image
            backbone — the model is :class:`mien.models.au.head.AUHead` on precomputed per-face feature vectors
            (``"features"`` (B, ``in_features``) batches from ``AUDataModule(input="features")``; the default
            model's 1660 features). Its standardisation (mean/std) is fit on the training rows at ``fit``
            start (:meth:`mien.data.au.AUDataModule.feature_stats`); the image-only options (``augment``,
            ``ssl``, ``miro_weight``, an intensity head) raise ValueError with it — mirroring is done by the
            data module (``data.mirror``). Save it for ``mien analyze`` with :func:`export_au_head`.
        in_features, hidden: ``backbone="features"`` only: D and the AUHead's hidden width (0 = linear).
        pretrained: load pretrained weights (timm: from the hub; faceapi: shipped). Loading a checkpoint sets it
            to False (weights come from the checkpoint).
        features_only, out_indices: see :class:`mien.models.au.backbone.TimmBackbone`.
        intensity: ``"none"``, ``"regression"`` or ``"ordinal"``; ordinal_levels: L.
        dropout: before the heads (``backbone="features"``: the AUHead's dropout on its standardised input and
            hidden layer).
        loss: ``"bce"``, ``"focal"`` or ``"db"``; focal_alpha, focal_gamma: focal parameters (also γ of ``db``).
        pos_weight: ``"none"`` or ``"balanced"`` (``loss="bce"`` only): per-AU positive weight #neg/#pos of the
            training split clamped to [1, ``pos_weight_cap``] (:func:`balanced_pos_weight`).
        intensity_weight: weight of the intensity loss.
        ssl: ``"none"``, ``"fixmatch"``, ``"defixmatch"``; ssl_threshold: τ; ssl_weight: λ_u.
        miro_weight: λ of MIRO (0 = off); miro_lr_mult: LR multiplier of the variance encoders.
        lr, weight_decay, backbone_lr_mult: AdamW; warmup_steps, min_lr_ratio: linear warm-up then cosine decay
            to ``lr·min_lr_ratio`` over the run's steps.
        augment: weak augmentation of labelled images during training.
        image_size, grayscale, crop_scale: the input contract (linked from the data config); stored in
            checkpoints and ONNX metadata.
        val_merge_sides: also log metrics with left/right columns merged (max).
    """

    def __init__(self, au_names: list[str], backbone: str = "resnet10t", pretrained: bool = False,
                 features_only: bool = True, out_indices: list[int] | None = None, intensity: str = "none",
                 ordinal_levels: int = 5, dropout: float = 0.0, loss: str = "focal", focal_alpha: float | None = 0.25,
                 focal_gamma: float = 2.0, intensity_weight: float = 1.0, ssl: str = "none",
                 ssl_threshold: float = 0.95, ssl_weight: float = 1.0, miro_weight: float = 0.0,
                 miro_lr_mult: float = 10.0, lr: float = 1e-3, weight_decay: float = 1e-5,
                 backbone_lr_mult: float = 1.0, warmup_steps: int = 0, min_lr_ratio: float = 0.05,
                 augment: bool = True, image_size: int = 64, grayscale: bool = False, crop_scale: float = 1.1,
                 val_merge_sides: bool = False, in_features: int = 1660, hidden: int = 128,
                 pos_weight: str = "none", pos_weight_cap: float = 20.0):
        super().__init__()
        if not au_names:
            raise ValueError("AUTask needs au_names")
        for k, v, ok in (("loss", loss, ("bce", "focal", "db")), ("ssl", ssl, ("none", "fixmatch", "defixmatch")),
                         ("pos_weight", pos_weight, ("none", "balanced"))):
            if v not in ok:
                raise ValueError(f"{k} must be one of {ok}, got {v!r}")
        if pos_weight != "none" and loss != "bce":
            raise ValueError(f"pos_weight={pos_weight!r} applies to loss='bce' only (got loss={loss!r})")
        self.features_input = backbone == "features"
        if self.features_input:
            bad = [name for name, on in (("augment", augment), ("ssl", ssl != "none"), ("miro_weight", miro_weight > 0),
                                         ("intensity", intensity != "none")) if on]
            if bad:
                raise ValueError(f"backbone='features' trains an AUHead on precomputed feature vectors: "
                                 f"{', '.join(bad)} (image augmentation, semi-supervised, MIRO, intensity head) "
                                 "do not apply; set augment=false, ssl=none, miro_weight=0, intensity=none "
                                 "(mirrored rows come from the data module's mirror option)")
        self.save_hyperparameters()
        self.au_names = list(au_names)
        self.miro = self.miro_ref = None
        if self.features_input:
            from mien.models.au.head import AUHead

            self.net = AUHead(in_features, self.au_names, hidden=hidden, dropout=dropout)
        else:
            bb = build_backbone(backbone, pretrained=pretrained, features_only=features_only, out_indices=out_indices)
            self.net = AUNet(bb, len(au_names), intensity=intensity, ordinal_levels=ordinal_levels, dropout=dropout)
            if miro_weight > 0:
                self.miro_ref = copy.deepcopy(bb).eval().requires_grad_(False)
                self.miro = MIRORegularizer(bb.level_dims)
        self.db_loss: DistributionBalancedLoss | None = None
        self.pos_weight: torch.Tensor | None = None
        self._flip_perm = flip_permutation(self.au_names)
        self._val: list[dict] = []

    # -- setup
    def set_class_counts(self, pos_counts, neg_counts) -> None:
        """Build the distribution-balanced loss from (A,) label counts."""
        self.db_loss = DistributionBalancedLoss(pos_counts, neg_counts, gamma=self.hparams.focal_gamma)

    def set_pos_weight(self, pos_counts, neg_counts) -> None:
        """Set the BCE positive weights (``pos_weight="balanced"``) from (A,) training label counts."""
        self.pos_weight = balanced_pos_weight(pos_counts, neg_counts, self.hparams.pos_weight_cap)

    def setup(self, stage: str | None = None) -> None:
        h = self.hparams
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if h.loss == "db" and self.db_loss is None:
            if dm is None or not hasattr(dm, "class_counts"):
                raise RuntimeError("loss='db' needs class counts: use AUDataModule or call set_class_counts()")
            self.set_class_counts(*dm.class_counts())
        if h.pos_weight == "balanced" and self.pos_weight is None:
            if dm is None or not hasattr(dm, "class_counts"):
                raise RuntimeError("pos_weight='balanced' needs class counts: use AUDataModule or call "
                                   "set_pos_weight()")
            self.set_pos_weight(*dm.class_counts())
        if self.features_input and dm is not None:
            dim = getattr(dm, "feature_dim", None)
            if dim is None:
                raise ValueError("backbone='features' needs feature batches: use AUDataModule(input='features')")
            if dim != h.in_features:
                raise ValueError(f"the data has {dim} features per face but model.in_features is {h.in_features}")
            # fit the standardisation once, on the training rows (a loaded checkpoint keeps its own)
            untouched = bool((self.net.feature_mean == 0).all() and (self.net.feature_std == 1).all())
            if stage == "fit" and untouched and hasattr(dm, "feature_stats"):
                mean, std = dm.feature_stats()
                self.net.set_normalization(torch.from_numpy(mean), torch.from_numpy(std))

    def train(self, mode: bool = True):
        super().train(mode)
        if self.miro_ref is not None:
            self.miro_ref.eval()
        return self

    def forward(self, x: torch.Tensor) -> dict:
        """(B, 3, S, S) float RGB [0, 1] -> :class:`AUNet` outputs (``occ`` logits (B, A), ``int``, ``levels``);
        with ``backbone="features"``: (B, D) float features -> ``{"occ": (B, A) logits}``."""
        if self.features_input:
            return {"occ": self.net(x)}
        return self.net(x)

    @staticmethod
    def _inputs(batch: dict) -> torch.Tensor:
        return batch["features"] if "features" in batch else batch["image"]

    # -- losses
    def occurrence_loss(self, logits, target, mask) -> torch.Tensor:
        h = self.hparams
        if h.loss == "bce":
            return bce_loss(logits, target, mask, self.pos_weight)
        if h.loss == "focal":
            return sigmoid_focal_loss(logits, target, mask, h.focal_alpha, h.focal_gamma)
        if self.db_loss is None:
            raise RuntimeError("loss='db' before class counts were set")
        return self.db_loss(logits, target, mask)

    def supervised_loss(self, out: dict, batch: dict) -> tuple[torch.Tensor, dict]:
        parts = {"occ": self.occurrence_loss(out["occ"], batch["occ"], batch["occ_mask"])}
        h = self.hparams
        if h.intensity == "regression":
            parts["int"] = _masked_mean((out["int"] - batch["int"]).abs(), batch["int_mask"])
        elif h.intensity == "ordinal":
            tgt = ordinal_targets(batch["int"], h.ordinal_levels)
            m = batch["int_mask"][..., None].expand_as(tgt)
            parts["int"] = bce_loss(out["int"], tgt, m)
        total = parts["occ"] + h.intensity_weight * parts.get("int", 0.0)
        return total, parts

    def training_step(self, batch, batch_idx):
        h = self.hparams
        lab, ulb = (batch["labeled"], batch.get("unlabeled")) if "labeled" in batch else (batch, None)
        if self.features_input:
            if "features" not in lab:
                raise ValueError("backbone='features' needs 'features' batches: use AUDataModule(input='features')")
            x = lab["features"]
            loss, parts = self.supervised_loss(self(x), lab)
            logs = {f"train/loss_{k}": v for k, v in parts.items()}
            logs["train/loss"] = loss
            self.log_dict(logs, prog_bar=False, batch_size=len(x))
            return loss
        x = lab["image"]
        if h.augment:
            x, flips = weak_augment(x, return_flips=True)
            lab = flip_labels(lab, flips, self._flip_perm)
        out = self.net(x)
        loss, parts = self.supervised_loss(out, lab)
        logs = {f"train/loss_{k}": v for k, v in parts.items()}
        if h.ssl != "none":
            l_u = out["occ"].new_zeros(())
            if ulb is not None and len(ulb["image"]):
                uw = weak_augment(ulb["image"])
                us = strong_augment(uw)
                z = self.net(torch.cat([uw, us]))["occ"]
                l_u = fixmatch_unlabeled_loss(z[len(uw):], z[:len(uw)], h.ssl_threshold)
            if h.ssl == "defixmatch":
                out_s = self.net(strong_augment(x))
                loss_s, _ = self.supervised_loss(out_s, lab)
                loss = 0.5 * (loss + loss_s)
                l_anti = fixmatch_unlabeled_loss(out_s["occ"], out["occ"], h.ssl_threshold)
                logs["train/loss_anti"] = l_anti
                l_u = l_u - l_anti
            logs["train/loss_unlabeled"] = l_u
            if torch.isfinite(l_u):
                loss = loss + h.ssl_weight * l_u
        if self.miro is not None:
            with torch.no_grad():
                ref = self.miro_ref.levels(x)
            reg = self.miro(out["levels"], ref)
            logs["train/miro"] = reg
            loss = loss + h.miro_weight * reg
        logs["train/loss"] = loss
        self.log_dict(logs, prog_bar=False, batch_size=len(x))
        return loss

    def validation_step(self, batch, batch_idx):
        x = self._inputs(batch)
        out = self(x)
        loss, _ = self.supervised_loss(out, batch)
        self.log("val/loss", loss, prog_bar=True, batch_size=len(x))
        inten = None if self.features_input else self.net.intensity_01(out)
        occ = torch.where(batch["occ_mask"] > 0, batch["occ"], torch.full_like(batch["occ"], float("nan")))
        rec = {"prob": torch.sigmoid(out["occ"]).float().cpu(), "occ": occ.float().cpu()}
        if inten is not None:
            it = torch.where(batch["int_mask"] > 0, batch["int"], torch.full_like(batch["int"], float("nan")))
            rec.update(int_pred=inten.float().cpu(), int_true=it.float().cpu())
        self._val.append(rec)
        return loss

    def test_step(self, batch, batch_idx):
        return self.validation_step(batch, batch_idx)

    def on_validation_epoch_start(self) -> None:
        self._val = []

    def on_test_epoch_start(self) -> None:
        self._val = []

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test")

    def compute_metrics(self, records: list[dict], names: Sequence[str] | None = None) -> dict[str, float]:
        """Per-AU and macro metrics of collected validation records (see module docstring); NaNs omitted."""
        from mien.metrics import au as M

        names = list(names or self.au_names)
        cat = {k: torch.cat([r[k] for r in records]).numpy() for k in records[0]}
        res: dict[str, np.ndarray] = {
            "f1": M.au_f1(cat["occ"], cat["prob"], 0.5),
            "f1_eer": M.au_f1_at_eer(cat["occ"], cat["prob"])[0],
            "ap": M.au_average_precision(cat["occ"], cat["prob"]),
            "auc": M.au_roc_auc(cat["occ"], cat["prob"]),
        }
        if "int_pred" in cat:
            t, p = cat["int_true"] * 5.0, cat["int_pred"] * 5.0  # FACS units
            res.update(icc=M.au_icc(t, p), pcc=M.au_pearson(t, p), mae=M.au_mae(t, p))
        out = {}
        for key, vals in res.items():
            for n, v in zip(names, vals, strict=True):
                if np.isfinite(v):
                    out[f"{key}/{n}"] = float(v)
            if np.isfinite(vals).any():
                out[f"{key}_macro"] = float(np.nanmean(vals))
        return out

    def _log_metrics(self, prefix: str) -> None:
        if not self._val:
            return
        metrics = self.compute_metrics(self._val)
        if self.hparams.val_merge_sides:
            from mien.data.au import merge_sided, sided_groups

            merged, groups = sided_groups(self.au_names)
            if len(merged) < len(self.au_names):
                recs = [{k: torch.from_numpy(merge_sided(v.numpy(), groups)) for k, v in r.items()} for r in self._val]
                metrics.update({f"merged/{k}": v for k, v in self.compute_metrics(recs, merged).items()})
        self.last_metrics = metrics
        if metrics:
            self.log_dict({f"{prefix}/{k}": v for k, v in metrics.items()})
        self._val = []

    # -- optimisation
    def configure_optimizers(self):
        h = self.hparams
        if self.features_input:
            groups = [{"params": list(self.net.parameters()), "lr": h.lr}]
        else:
            head = [p for n, p in self.net.named_parameters() if not n.startswith("backbone.")]
            groups = [{"params": list(self.net.backbone.parameters()), "lr": h.lr * h.backbone_lr_mult},
                      {"params": head, "lr": h.lr}]
        if self.miro is not None:
            groups.append({"params": list(self.miro.parameters()), "lr": h.lr * h.miro_lr_mult, "weight_decay": 0.0})
        opt = torch.optim.AdamW(groups, lr=h.lr, weight_decay=h.weight_decay)
        total = max(int(self.trainer.estimated_stepping_batches), 1) if self._trainer is not None else 1000

        def factor(step: int) -> float:
            if step < h.warmup_steps:
                return (step + 1) / h.warmup_steps
            t = min((step - h.warmup_steps) / max(total - h.warmup_steps, 1), 1.0)
            return h.min_lr_ratio + (1 - h.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # -- contract
    def contract(self) -> dict:
        """The input contract stored with the model (checkpoint hparams and ONNX metadata)."""
        h = self.hparams
        if self.features_input:
            return {"au_names": list(self.au_names), "input": "features", "in_features": int(h.in_features),
                    "features": "mien.models.au.combine_features(embedding, landmarks) / au_features(images, "
                                "landmarks): face-api expression embedding (256) ‖ canonical-aligned mesh (1404)",
                    "threshold": 0.5, "backbone": "features"}
        return {
            "au_names": list(self.au_names),
            "image_size": int(h.image_size),
            "value_range": "0-1",
            "color": "RGB",
            "grayscale": bool(h.grayscale),
            "crop": {"kind": "landmark-box-square", "scale": float(h.crop_scale),
                     "landmark_scheme": "mediapipe478",
                     "function": "mien.models.au.features.face_crops(images, landmark_bboxes(lm), scale, image_size)"},
            "intensity": h.intensity,
            "intensity_unit": "FACS/5 in [0, 1]",
            "threshold": 0.5,
            "backbone": h.backbone,
        }


# ------------------------------------------------------------------------------------------------------------
# export and inference
def _load_task(checkpoint: str | os.PathLike, device: str = "cpu") -> AUTask:
    task = AUTask.load_from_checkpoint(str(checkpoint), map_location=device, pretrained=False, strict=True)
    return task.eval()


def export_au_onnx(checkpoint: str | os.PathLike, out_path: str | os.PathLike, opset: int = 17, atol: float = 1e-4,
                   batch: int = 2, seed: int = 0):
    """Export an :class:`AUTask` Lightning checkpoint to ONNX in eval mode, with checker + onnxruntime parity.

    The graph: input ``image`` (B, 3, S, S) float32 RGB [0, 1] -> ``probs`` (B, A) [, ``intensity`` (B, A) in
    [0, 1] = FACS / 5]; batch is dynamic. The contract (:meth:`AUTask.contract`: AU names, S, crop, grayscale)
    is stored as JSON in the model's ``metadata_props`` under ``"mien_au"``.

    Returns:
        :class:`mien.export.onnx.OnnxExportReport` (path, opset, max_abs_diff, outputs).

    Raises:
        FileNotFoundError: no checkpoint. ValueError: parity above ``atol``. onnx.checker.ValidationError.
    """
    import onnx

    from mien.export.onnx import export_onnx
    from mien.io.atomic import atomic_output

    if not Path(checkpoint).is_file():
        raise FileNotFoundError(f"checkpoint not found: {checkpoint}")
    task = _load_task(checkpoint)
    if task.features_input:
        raise ValueError(f"{checkpoint}: backbone='features' models are exported with export_au_head")
    contract = task.contract()
    model = AUInference(task.net).eval()
    s = contract["image_size"]
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, 3, s, s, generator=g)
    check = torch.rand(batch + 1, 3, s, s, generator=g)
    outputs = ["probs"] if contract["intensity"] == "none" else ["probs", "intensity"]
    report = export_onnx(model, [x], out_path, ["image"], outputs, opset=opset, atol=atol, check_inputs=[check])
    m = onnx.load(str(out_path))
    del m.metadata_props[:]
    entry = m.metadata_props.add()
    entry.key, entry.value = ONNX_METADATA_KEY, json.dumps(contract)
    with atomic_output(out_path) as tmp:
        onnx.save(m, str(tmp))
    return report


def export_au_head(task: AUTask | str | os.PathLike, out_dir: str | os.PathLike, thresholds=None,
                   extra: dict | None = None) -> dict:
    """Save a ``backbone="features"`` :class:`AUTask` (or its checkpoint) in the default AU model's format.

    Writes ``au_default.safetensors`` + ``config.json`` into ``out_dir`` with
    :func:`mien.models.au.save_au_head`; :func:`mien.models.au.load_au_head` reads them back without Lightning,
    and a copy in ``mien/assets/au`` is what ``mien analyze --au`` uses. The AUHead's standardisation buffers
    travel with the weights, so the loaded model gives the task's probabilities on the same (B, D) features.

    Args:
        task: the trained task, or a path to its Lightning ``.ckpt``.
        out_dir: destination folder.
        thresholds: (A,) decision thresholds (default 0.5 each).
        extra: more config entries (training data, hyper-parameters, CV summary).

    Returns:
        the config dict written.

    Raises:
        ValueError: the task is not a ``backbone="features"`` model.
    """
    from mien.models.au import save_au_head

    if not isinstance(task, AUTask):
        if not Path(task).is_file():
            raise FileNotFoundError(f"checkpoint not found: {task}")
        task = _load_task(task)
    if not task.features_input:
        raise ValueError(f"export_au_head needs an AUTask with backbone='features', got {task.hparams.backbone!r} "
                         "(image models: export_au_onnx)")
    h = task.hparams
    head = copy.deepcopy(task.net).cpu().eval()
    th = np.full(len(task.au_names), 0.5) if thresholds is None else np.asarray(thresholds, np.float64)
    cfg = {"trainer": {"task": "mien.tasks.au.AUTask", "backbone": "features",
                       "hyperparameters": {k: h[k] for k in ("hidden", "dropout", "loss", "pos_weight",
                                                             "pos_weight_cap", "lr", "weight_decay",
                                                             "warmup_steps", "min_lr_ratio")}}}
    cfg.update(extra or {})
    return save_au_head(head, out_dir, th, dropout=float(h.dropout), extra=cfg)


class AUModelRunner:
    """Callable AU model from :func:`load_au_model`.

    Attributes:
        names: A AU names. contract: the stored input contract (dict). backend: ``"torch"`` or ``"onnx"``.

    ``runner(crops)`` with crops (B, H, W, 3) uint8 RGB face crops (cut as ``contract["crop"]`` says; any H, W —
    resized to S like the training images) returns ``(names, probs)``, probs float32 (B, A) in [0, 1].
    :meth:`predict` also returns the intensity (B, A) in [0, 1] (×5 = FACS) when the model has one.
    """

    def __init__(self, contract: dict, torch_model=None, session=None):
        self.contract, self.names = contract, list(contract["au_names"])
        self._model, self._session = torch_model, session
        self.backend = "torch" if torch_model is not None else "onnx"

    def preprocess(self, crops) -> np.ndarray:
        """Crops (B, H, W, 3) or (H, W, 3) uint8 RGB → model input float32 (B, 3, S, S) in [0, 1] (resized to the
        contract's size S, converted to gray-as-RGB when the model was trained on gray images).

        Raises:
            ValueError: not uint8 RGB crops.
        """
        from mien.data.au import prepare_image

        crops = np.asarray(crops)
        if crops.ndim == 3:
            crops = crops[None]
        if crops.ndim != 4 or crops.shape[-1] != 3 or crops.dtype != np.uint8:
            raise ValueError(f"crops must be (B, H, W, 3) uint8 RGB, got {crops.shape} {crops.dtype}")
        s, gray = self.contract["image_size"], self.contract["grayscale"]
        if not len(crops):
            return np.zeros((0, 3, s, s), np.float32)
        return torch.stack([prepare_image(c, s, gray) for c in crops]).numpy()

    def crop_faces(self, images, landmarks) -> np.ndarray:
        """Cut (B, S, S, 3) uint8 crops from B RGB images and their (B, 478, 3) landmarks as the contract says."""
        from mien.models.au import landmark_bboxes
        from mien.models.au.features import face_crops

        lm = np.asarray(landmarks, np.float32)
        lm = lm[None] if lm.ndim == 2 else lm
        return face_crops(images, landmark_bboxes(lm), scale=self.contract["crop"]["scale"],
                          size=self.contract["image_size"])

    def predict(self, crops) -> dict:
        """Run the model on crops (B, H, W, 3) uint8 RGB cut by :meth:`crop_faces`.

        Returns:
            {"probs": float32 (B, A) occurrence probabilities in [0, 1]} plus, for models with an intensity
            head, "intensity": float32 (B, A) in [0, 1] (× 5 = FACS intensity).
        """
        x = self.preprocess(crops)
        if len(x) == 0:
            a = len(self.names)
            return {"probs": np.zeros((0, a), np.float32)}
        if self._model is not None:
            with torch.no_grad():
                out = self._model(torch.from_numpy(x))
            out = [out] if isinstance(out, torch.Tensor) else list(out)
            out = [o.numpy() for o in out]
        else:
            out = self._session.run(None, {"image": x})
        res = {"probs": np.asarray(out[0], np.float32)}
        if len(out) > 1:
            res["intensity"] = np.asarray(out[1], np.float32)
        return res

    def __call__(self, crops) -> tuple[list[str], np.ndarray]:
        return self.names, self.predict(crops)["probs"]


def load_au_model(path: str | os.PathLike, device: str = "cpu") -> AUModelRunner:
    """Load an AU model trained by :class:`AUTask` from a Lightning ``.ckpt`` or an exported ``.onnx``.

    Returns:
        :class:`AUModelRunner`: ``runner(crops_uint8 (B, H, W, 3) RGB) -> (names, probs (B, A) float32)``.

    Raises:
        FileNotFoundError: missing file. ValueError: unknown suffix or ONNX file without mien AU metadata.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"AU model not found: {path}")
    if path.suffix == ".onnx":
        import onnx
        import onnxruntime as ort

        meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        if ONNX_METADATA_KEY not in meta:
            raise ValueError(f"{path}: no '{ONNX_METADATA_KEY}' metadata (not exported by export_au_onnx)")
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return AUModelRunner(json.loads(meta[ONNX_METADATA_KEY]), session=sess)
    if path.suffix == ".ckpt":
        task = _load_task(path, device)
        if task.features_input:
            raise ValueError(f"{path}: a backbone='features' AUHead checkpoint takes feature vectors, not crops; "
                             "save it with export_au_head and load it with mien.models.au.load_au_head")
        return AUModelRunner(task.contract(), torch_model=AUInference(task.net).eval().cpu())
    raise ValueError(f"{path}: expected a .ckpt or .onnx file")


# ------------------------------------------------------------------------------------------------------------
# CLI
def default_config(name: str = "tiny") -> Path:
    """Path of a shipped YAML config (``mien/configs/au/<name>.yaml``)."""
    from importlib.resources import files

    return Path(str(files("mien").joinpath("configs", "au", f"{name}.yaml")))


def cli_main(argv: list[str] | None = None, run: bool = True):
    """LightningCLI over :class:`AUTask` and :class:`mien.data.au.AUDataModule`.

    ``model.au_names`` (from ``data.au_names`` and ``data.merge_sides``), ``model.image_size``,
    ``model.grayscale`` and ``model.crop_scale`` are linked from the data config and cannot be set separately.
    ``--config NAME`` with NAME not an existing file resolves to ``mien/configs/au/NAME.yaml``.

    Example::

        cli_main(["fit", "--config", "tiny", "--data.csv", "/data/expressions/ckplus48_facs_labels.csv"])

    Returns:
        the ``LightningCLI`` object (``model``, ``datamodule``, ``trainer``).
    """
    from lightning.pytorch.cli import LightningCLI

    from mien.data.au import AUDataModule, output_au_names

    class AUCLI(LightningCLI):
        def add_arguments_to_parser(self, parser):
            parser.link_arguments(("data.au_names", "data.merge_sides"), "model.au_names",
                                  compute_fn=lambda names, merge: output_au_names(names or [], merge))
            parser.link_arguments("data.image_size", "model.image_size")
            parser.link_arguments("data.grayscale", "model.grayscale")
            parser.link_arguments("data.crop_scale", "model.crop_scale")

    args = list(argv) if argv is not None else None
    if args is not None:
        for i, a in enumerate(args):
            if a == "--config" and i + 1 < len(args) and not os.path.exists(args[i + 1]) \
                    and default_config(args[i + 1]).is_file():
                args[i + 1] = str(default_config(args[i + 1]))
            elif a.startswith("--config=") and not os.path.exists(a[9:]) and default_config(a[9:]).is_file():
                args[i] = "--config=" + str(default_config(a[9:]))
    return AUCLI(AUTask, AUDataModule, args=args, run=run, save_config_kwargs={"overwrite": True})
