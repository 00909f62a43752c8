"""Joint training of the expression tokenizer (expression transformer + reconstruction) with Lightning.

Losses (seed 1, ``ExpressionReconstructionLoss``; DIGEST §1.3), computed batched over clips (B, T):

* reconstruction: ``mse`` | ``l1`` | ``mse+l1`` between reconstruction and input in [0, 1] RGB pixels, plus an
  optional perceptual term (L1 between feature maps of a frozen timm net, :class:`PerceptualLoss`);
* temporal = ``coherence_weight``·coherence + ``contrast_weight``·contrast, with coherence =
  mean_t(1 − cos(z_t, z_{t+1})) and contrast = mean_t |cos(z_t, z_{t+s})| (s = ``contrast_stride``; 0 if T ≤ s);
* diversity = clamp(mean off-diagonal cos of z[::``diversity_stride``], min 0) within each clip (seed), or
  over the whole batch (``diversity_scope="batch"``).

Every loss weight and the learning rate follow the same piecewise-linear :class:`WarmupDecaySchedule`
(initial → peak over ``warmup_steps``, then peak → final until ``total_steps``). Unlike the seed's joint run
(initial LR = peak LR), the LR warm-up really warms up: it starts at ``lr_initial`` (default ``min_lr``).

Batches: ``{"frames": (B, T, 3, H, W) float [0, 1] or uint8 RGB, "subject_id": (B,) long (optional)}``.

:class:`PredictorTask` trains the next-token :class:`~mien.models.tokenizer.nets.ExpressionPredictor` on a
(frozen by default) tokenizer's tokens.

Also here: :class:`VideoCropsDataModule` (a small in-memory DataModule over face crops of video files, until
the dataset code provides one) and :func:`cli_main` (LightningCLI entry, YAML configs in
``mien/configs/tokenizer/``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from mien.models.registry import create_model
from mien.models.tokenizer.nets import ExpressionTokenizer


# ------------------------------------------------------------------------------------------------------------
# schedule
class WarmupDecaySchedule:
    """Piecewise-linear schedule shared by the LR and every loss weight (seed CombinedLRLossWeightScheduler).

    value(step) = lerp(initial, peak, step / warmup_steps) for step < warmup_steps, then
    lerp(peak, final, clamp((step − warmup_steps) / (total_steps − warmup_steps), 0, 1)); ``floor`` clamps
    from below (the LR's ``min_lr``).

    Args:
        initial, peak, final: values at step 0, at ``warmup_steps`` and at ``total_steps`` and after.
        warmup_steps: ≥ 0 (0 = start at ``peak``).
        total_steps: ≥ warmup_steps.
        floor: lower bound or None.

    Raises:
        ValueError: negative warm-up or total_steps < warmup_steps.
    """

    def __init__(self, initial: float, peak: float, final: float, warmup_steps: int, total_steps: int,
                 floor: float | None = None):
        if warmup_steps < 0 or total_steps < warmup_steps:
            raise ValueError(f"need 0 <= warmup_steps ({warmup_steps}) <= total_steps ({total_steps})")
        self.initial, self.peak, self.final = float(initial), float(peak), float(final)
        self.warmup_steps, self.total_steps, self.floor = int(warmup_steps), int(total_steps), floor

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            v = self.initial + (self.peak - self.initial) * step / self.warmup_steps
        else:
            span = self.total_steps - self.warmup_steps
            p = 1.0 if span <= 0 else min(max((step - self.warmup_steps) / span, 0.0), 1.0)
            v = self.peak + (self.final - self.peak) * p
        return max(v, self.floor) if self.floor is not None else v


# ------------------------------------------------------------------------------------------------------------
# losses
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


# ------------------------------------------------------------------------------------------------------------
# tasks
class _ScheduledTask(pl.LightningModule):
    """Shared LR + loss-weight schedule (:class:`WarmupDecaySchedule`) and AdamW set-up.

    Subclasses set ``LOSSES`` (names ``k`` with an ``hparams[f"{k}_weights"]`` (initial, peak, final) triple)
    and ``hparams`` lr, min_lr, lr_initial, weight_decay, betas, warmup_steps; ``self._total_steps``.
    """

    LOSSES: tuple[str, ...] = ()

    # ---- schedules -----------------------------------------------------------------------------------------
    def total_steps(self) -> int:
        if self._total_steps is not None:
            return int(self._total_steps)
        est = getattr(self.trainer, "estimated_stepping_batches", None) if self._trainer is not None else None
        if est is None or not np.isfinite(est):
            raise ValueError("total_steps is not set and the trainer cannot estimate it")
        self._total_steps = max(int(est), self.hparams.warmup_steps)
        return self._total_steps

    def lr_schedule(self) -> WarmupDecaySchedule:
        h = self.hparams
        init = h.min_lr if h.lr_initial is None else h.lr_initial
        return WarmupDecaySchedule(init, h.lr, h.min_lr, h.warmup_steps, self.total_steps(), floor=h.min_lr)

    def weight_schedules(self) -> dict[str, WarmupDecaySchedule]:
        h, total = self.hparams, self.total_steps()
        return {k: WarmupDecaySchedule(*getattr(h, f"{k}_weights"), h.warmup_steps, total)
                for k in self.LOSSES}

    def val_prefix(self, dataloader_idx: int = 0) -> str:
        """Log prefix of a validation set: ``val`` with one set; ``val_<name>`` when the datamodule gives several
        (``val_set_names``, e.g. :class:`mien.data.datamodule.ClipDataModule`: ``val_unseen_subjects/…`` and
        ``val_heldout_time/…``)."""
        dm = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        names = list(getattr(dm, "val_set_names", None) or [])
        return f"val_{names[dataloader_idx]}" if len(names) > 1 and dataloader_idx < len(names) else "val"

    def loss_weights(self, step: int | None = None) -> dict[str, float]:
        """Loss weights at ``step`` (default: the current global step)."""
        step = self.global_step if step is None else step
        return {k: s(step) for k, s in self.weight_schedules().items()}

    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        h = self.hparams
        opt = torch.optim.AdamW(params, lr=h.lr, weight_decay=h.weight_decay, betas=tuple(h.betas))
        sched = self.lr_schedule()
        lam = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: sched(s) / h.lr)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": lam, "interval": "step", "frequency": 1}}

    @staticmethod
    def _unpack(batch, crop_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Frames (B, T, 3, S, S) float in [0, 1] and subject ids (B,) from a batch.

        Accepts ``(frames, ids)`` tuples, ``{"frames", "subject_id"}`` dicts, and batches of mien shards
        (:class:`mien.data.ClipDataModule`: ``video`` (B, T, 3, S, S) uint8, ``meta[i]["subject_id"]``), whose
        crops are resized (antialiased bilinear) to ``crop_size`` when it differs.
        """
        if isinstance(batch, dict) and "video" in batch:
            frames = batch["video"]
            ids = torch.tensor([int(m["subject_id"]) for m in batch["meta"]], device=frames.device)
        elif isinstance(batch, dict):
            frames, ids = batch["frames"], batch.get("subject_id")
        else:
            frames, ids = batch[0], (batch[1] if len(batch) > 1 else None)
        if frames.dtype == torch.uint8:
            frames = frames.float() / 255.0
        if frames.ndim == 4:
            frames = frames.unsqueeze(1)
        if frames.ndim != 5:
            raise ValueError(f"expected frames (B, T, 3, H, W), got {tuple(frames.shape)}")
        if crop_size is not None and frames.shape[-1] != crop_size:
            b, t = frames.shape[:2]
            frames = torch.nn.functional.interpolate(frames.flatten(0, 1), size=(crop_size, crop_size),
                                                     mode="bilinear", antialias=True, align_corners=False)
            frames = frames.clamp(0, 1).unflatten(0, (b, t))
        return frames, ids


class TokenizerTask(_ScheduledTask):
    """LightningModule training an :class:`~mien.models.tokenizer.nets.ExpressionTokenizer`.

    Args:
        model: registered tokenizer name (``mien.list_models("tokenizer")``).
        model_overrides: keyword overrides of the registered config (e.g. ``{"pretrained": False}``).
        lr: peak learning rate (AdamW); min_lr: final/floor LR; lr_initial: LR at step 0 (default min_lr).
        weight_decay, betas: AdamW.
        warmup_steps, total_steps: schedule (total_steps None: the trainer's estimated stepping batches).
        recon_weights, temporal_weights, diversity_weights, perceptual_weights, variance_weights: (initial, peak,
            final) loss weights, scheduled like the LR (variance: :func:`variance_loss` with ``variance_target``
            as the per-dimension within-clip standard deviation to keep; off by default). Other defaults: the seed
            README's from-scratch values.
        recon_loss: "mse" | "l1" | "mse+l1".
        motion_gain: > 0 weights each pixel's reconstruction error by :func:`motion_weights` (what moves within
            the clip counts up to 1 + gain times more; the weighted mean is normalised by the mean weight);
            0 = uniform (seed).
        perceptual_net: timm name of a frozen feature net for the perceptual term (None: off);
            perceptual_pretrained: load its pretrained weights.
        coherence_weight, contrast_weight, contrast_stride, diversity_stride: temporal/diversity definitions.
        diversity_scope: "clip" (seed) or "batch" (see :func:`diversity_loss`).
        freeze_expression_transformer: freeze the whole expression transformer (subject embeddings and delta
            positions included; kept in eval mode) and optimise only the rest, as the seed's fine-tuning run.
        cache_backbone_tokens: keep the frozen timm backbone's patch tokens of every sample (by its shard key,
            float16 in CPU memory) so later epochs skip the backbone; needs keyed batches (mien shards).

    Logged every step (``train/``) and per epoch (``val/``, or ``val_<set>/`` per validation set, see
    :meth:`val_prefix`): loss, loss_recon, loss_perceptual, loss_temporal, loss_coherence, loss_contrast,
    loss_diversity, loss_variance, w_recon, w_temporal, w_diversity, w_perceptual, w_variance, lr,
    sim_mean/std/min/max (within-clip token cosine).
    """

    LOSSES = ("recon", "temporal", "diversity", "perceptual", "variance")

    def __init__(self, model: str = "tokenizer-tiny", model_overrides: dict | None = None, lr: float = 5e-5,
                 min_lr: float = 1e-6, lr_initial: float | None = None, weight_decay: float = 0.01,
                 betas: tuple[float, float] = (0.9, 0.999), warmup_steps: int = 3000,
                 total_steps: int | None = None,
                 recon_weights: tuple[float, float, float] = (0.01, 0.2, 0.5),
                 temporal_weights: tuple[float, float, float] = (0.4, 0.3, 0.2),
                 diversity_weights: tuple[float, float, float] = (0.3, 0.2, 0.2),
                 perceptual_weights: tuple[float, float, float] = (0.0, 0.0, 0.0),
                 variance_weights: tuple[float, float, float] = (0.0, 0.0, 0.0), variance_target: float = 0.1,
                 recon_loss: str = "mse", motion_gain: float = 0.0, perceptual_net: str | None = None,
                 perceptual_pretrained: bool = True, coherence_weight: float = 0.7, contrast_weight: float = 0.3, contrast_stride: int = 5,
                 diversity_stride: int = 5, diversity_scope: str = "clip",
                 freeze_expression_transformer: bool = False, cache_backbone_tokens: bool = False):
        super().__init__()
        self.save_hyperparameters()
        if recon_loss not in ("mse", "l1", "mse+l1"):
            raise ValueError(f"recon_loss must be 'mse', 'l1' or 'mse+l1', got {recon_loss!r}")
        if diversity_scope not in ("clip", "batch"):
            raise ValueError(f"diversity_scope must be 'clip' or 'batch', got {diversity_scope!r}")
        self.model: ExpressionTokenizer = create_model(model, **(model_overrides or {}))
        if not isinstance(self.model, ExpressionTokenizer):
            raise TypeError(f"{model!r} is not an expression tokenizer")
        self.perceptual = PerceptualLoss(perceptual_net, perceptual_pretrained) if perceptual_net else None
        if freeze_expression_transformer:
            self.model.expression.requires_grad_(False)
            self.model.expression.eval()
        self._total_steps = total_steps
        self._backbone_cache: dict[str, torch.Tensor] = {}
        if cache_backbone_tokens and not hasattr(self.model.tokenizer, "backbone_tokens"):
            raise ValueError("cache_backbone_tokens needs a frozen timm backbone (e.g. tokenizer-dinov2-s14)")

    def on_fit_start(self) -> None:
        """Refuse data cut differently from the model's crop contract (``config.crop``): a tokenizer trained on
        one crop and run on another at inference gives meaningless tokens."""
        dm = getattr(self.trainer, "datamodule", None)
        want = getattr(dm, "crop_contract", None)
        if want is not None and want != self.model.config.crop:
            raise ValueError(f"the data's crops are {want!r} but the model's crop contract is "
                             f"{self.model.config.crop!r}: set model_overrides.crop (or the data's crop/margin)")

    def backbone_tokens_for(self, batch, frames: torch.Tensor) -> torch.Tensor | None:
        """Cached frozen-backbone tokens (B·T, P, C) of a keyed batch (mien shards: ``__key__``), computing and
        storing (float16, CPU) those not seen yet; None when caching is off or the batch has no keys."""
        if not self.hparams.cache_backbone_tokens or not isinstance(batch, dict) or "__key__" not in batch:
            return None
        keys = list(batch["__key__"])
        missing = [i for i, k in enumerate(keys) if k not in self._backbone_cache]
        if missing:
            new = self.model.tokenizer.backbone_tokens(frames[missing].flatten(0, 1))
            new = new.unflatten(0, (len(missing), frames.shape[1]))
            for j, i in enumerate(missing):
                self._backbone_cache[keys[i]] = new[j].to("cpu", torch.float16)
        cached = torch.stack([self._backbone_cache[k] for k in keys]).to(frames.device, torch.float32)
        return cached.flatten(0, 1)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.hparams.freeze_expression_transformer:
            self.model.expression.eval()
        return self

    # ---- steps ---------------------------------------------------------------------------------------------
    def compute_losses(self, frames: torch.Tensor, subject_ids=None, weights: dict[str, float] | None = None,
                       backbone_tokens: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """All loss components and the weighted total for a (B, T, 3, H, W) [0, 1] batch (``backbone_tokens``:
        cached frozen-backbone tokens of its frames, see :meth:`backbone_tokens_for`)."""
        h = self.hparams
        w = weights or self.loss_weights()
        out = self.model(frames, subject_ids, backbone_tokens=backbone_tokens)
        pred, target = out.recon.flatten(0, 1), frames.flatten(0, 1)
        err = 0
        if h.recon_loss in ("mse", "mse+l1"):
            err = err + (pred - target).square()
        if h.recon_loss in ("l1", "mse+l1"):
            err = err + (pred - target).abs()
        if h.get("motion_gain", 0.0):
            wm = motion_weights(frames, h.motion_gain).flatten(0, 1)
            recon = (err * wm).mean() / wm.mean()
        else:
            recon = err.mean()
        perc = self.perceptual(pred, target) if self.perceptual is not None else pred.new_zeros(())
        coherence, contrast = temporal_losses(out.tokens, h.contrast_stride)
        temporal = h.coherence_weight * coherence + h.contrast_weight * contrast
        div = diversity_loss(out.tokens, h.diversity_stride, h.diversity_scope)
        var = variance_loss(out.tokens, h.get("variance_target", 0.1))
        total = (w["recon"] * recon + w["perceptual"] * perc + w["temporal"] * temporal + w["diversity"] * div
                 + w.get("variance", 0.0) * var)
        logs = {"loss": total, "loss_recon": recon, "loss_perceptual": perc, "loss_temporal": temporal,
                "loss_coherence": coherence, "loss_contrast": contrast, "loss_diversity": div, "loss_variance": var}
        logs.update({f"w_{k}": torch.tensor(float(v), device=frames.device) for k, v in w.items()})
        logs.update(similarity_stats(out.tokens))
        return logs

    def training_step(self, batch, batch_idx):
        frames, ids = self._unpack(batch, self.model.config.crop_size)
        logs = self.compute_losses(frames, ids, backbone_tokens=self.backbone_tokens_for(batch, frames))
        logs["lr"] = torch.tensor(float(self.optimizers().param_groups[0]["lr"]), device=frames.device)
        self.log_dict({f"train/{k}": v.detach() if torch.is_tensor(v) else v for k, v in logs.items()},
                      on_step=True, on_epoch=False, prog_bar=False, batch_size=frames.shape[0])
        self.log("loss", logs["loss"].detach(), prog_bar=True, on_step=True, batch_size=frames.shape[0])
        return logs["loss"]

    def validation_step(self, batch, batch_idx, dataloader_idx: int = 0):
        frames, ids = self._unpack(batch, self.model.config.crop_size)
        logs = self.compute_losses(frames, ids, backbone_tokens=self.backbone_tokens_for(batch, frames))
        prefix = self.val_prefix(dataloader_idx)
        self.log_dict({f"{prefix}/{k}": v.detach() for k, v in logs.items()}, on_step=False, on_epoch=True,
                      batch_size=frames.shape[0], add_dataloader_idx=False)
        if batch_idx == 0:
            self._log_visuals(frames, ids, prefix)
        return logs["loss"]

    def _log_visuals(self, frames: torch.Tensor, ids, prefix: str = "val") -> None:
        """TensorBoard: histogram of within-clip token cosine similarities and a grid of inputs (top row) over
        reconstructions (bottom row) of the first validation batch. No-op without a TensorBoard logger."""
        experiment = getattr(self.logger, "experiment", None)
        if experiment is None or not hasattr(experiment, "add_histogram"):
            return
        with torch.no_grad():
            out = self.model(frames, ids)
            z = out.tokens  # (B, T, D), unit norm
            sims = torch.einsum("btd,bsd->bts", z, z)
            off_diag = ~torch.eye(z.shape[1], dtype=torch.bool, device=z.device)
            experiment.add_histogram(f"{prefix}/token_cosine_within_clip", sims[:, off_diag].flatten().float().cpu(),
                                     self.global_step)
            n = min(8, frames.shape[1])
            grid = torch.cat([frames[0, :n], out.recon[0, :n].clamp(0, 1)]).float().cpu()  # (2n, 3, H, W)
            rows = [torch.cat(list(grid[:n]), dim=2), torch.cat(list(grid[n:]), dim=2)]  # 2 × (3, H, n·W)
            experiment.add_image(f"{prefix}/input_vs_reconstruction", torch.cat(rows, dim=1), self.global_step)

    def predict_step(self, batch, batch_idx):
        frames, ids = self._unpack(batch, self.model.config.crop_size)
        return self.model.encode(frames, ids)

    def export(self, directory: str | os.PathLike) -> Path:
        """Write the model as ``config.json`` + ``model.safetensors`` (see :func:`save_pretrained`)."""
        from mien.models.tokenizer.export import save_pretrained

        return save_pretrained(self.model, directory)


def export_checkpoint(checkpoint: str | os.PathLike, directory: str | os.PathLike, **overrides) -> Path:
    """Lightning checkpoint of a :class:`TokenizerTask` → ``config.json`` + ``model.safetensors``.

    The model is rebuilt with ``pretrained=False`` (every weight, a frozen timm backbone's included, comes
    from the checkpoint, so nothing is downloaded). ``overrides`` go to ``load_from_checkpoint``.

    Raises:
        FileNotFoundError: no such checkpoint.
    """
    if not Path(checkpoint).is_file():
        raise FileNotFoundError(f"{checkpoint} not found")
    hp = torch.load(str(checkpoint), map_location="cpu", weights_only=False).get("hyper_parameters", {})
    overrides.setdefault("model_overrides", {**(hp.get("model_overrides") or {}), "pretrained": False})
    task = TokenizerTask.load_from_checkpoint(str(checkpoint), map_location="cpu", **overrides)
    return task.export(directory)


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


class PredictorTask(_ScheduledTask):
    """LightningModule training an :class:`~mien.models.tokenizer.nets.ExpressionPredictor` on the tokens of
    an expression tokenizer (seed 1 prediction branch, ``train_expression_prediction.py``).

    Args:
        predictor, predictor_overrides: registered predictor name and config overrides.
        tokenizer, tokenizer_overrides: registered tokenizer name and overrides, or ``tokenizer_dir``: an export
            (:func:`~mien.models.tokenizer.save_pretrained`) to load instead.
        freeze_tokenizer: keep the tokenizer frozen (eval mode, tokens under no_grad); False trains both, as
            the seed does.
        lr, min_lr, lr_initial, weight_decay, betas, warmup_steps, total_steps: as :class:`TokenizerTask`.
        prediction_weights, temporal_weights, diversity_weights: (initial, peak, final) weights (seed run:
            prediction .01/.15/.5, temporal .1/.3/.2, diversity .5/.4/.2).

    Batches: as :class:`TokenizerTask` (frames (B, T, 3, H, W), T ≥ 2, optional subject_id).
    Logged: loss, loss_prediction, loss_temporal, loss_diversity, w_*, lr.

    Raises:
        ValueError: predictor and tokenizer sizes differ.
    """

    LOSSES = ("prediction", "temporal", "diversity")

    def __init__(self, predictor: str = "tokenizer-predictor-tiny", predictor_overrides: dict | None = None,
                 tokenizer: str = "tokenizer-tiny", tokenizer_overrides: dict | None = None,
                 tokenizer_dir: str | None = None, freeze_tokenizer: bool = True, lr: float = 5e-5,
                 min_lr: float = 1e-6, lr_initial: float | None = None, weight_decay: float = 0.01,
                 betas: tuple[float, float] = (0.9, 0.999), warmup_steps: int = 3000,
                 total_steps: int | None = None,
                 prediction_weights: tuple[float, float, float] = (0.01, 0.15, 0.5),
                 temporal_weights: tuple[float, float, float] = (0.1, 0.3, 0.2),
                 diversity_weights: tuple[float, float, float] = (0.5, 0.4, 0.2)):
        super().__init__()
        self.save_hyperparameters()
        if tokenizer_dir:
            from mien.models.tokenizer.export import load_pretrained

            self.tokenizer = load_pretrained(tokenizer_dir)
        else:
            self.tokenizer = create_model(tokenizer, **(tokenizer_overrides or {}))
        self.predictor = create_model(predictor, **(predictor_overrides or {}))
        if self.tokenizer.config.dim != self.predictor.config.dim:
            raise ValueError(f"tokenizer dim {self.tokenizer.config.dim} != predictor dim "
                             f"{self.predictor.config.dim}")
        if freeze_tokenizer:
            self.tokenizer.requires_grad_(False).eval()
        self._total_steps = total_steps

    def train(self, mode: bool = True):
        super().train(mode)
        if self.hparams.freeze_tokenizer:
            self.tokenizer.eval()
        return self

    def compute_losses(self, frames: torch.Tensor, subject_ids=None,
                       weights: dict[str, float] | None = None) -> dict[str, torch.Tensor]:
        if frames.shape[1] < 2:
            raise ValueError("next-token prediction needs clips of T >= 2 frames")
        w = weights or self.loss_weights()
        if self.hparams.freeze_tokenizer:
            with torch.no_grad():
                z = self.tokenizer.encode(frames, subject_ids)
        else:
            z = self.tokenizer.encode(frames, subject_ids)
        logs = prediction_losses(z, self.predictor(z[:, :-1]))
        logs["loss"] = (w["prediction"] * logs["loss_prediction"] + w["temporal"] * logs["loss_temporal"]
                        + w["diversity"] * logs["loss_diversity"])
        logs.update({f"w_{k}": torch.tensor(float(v), device=frames.device) for k, v in w.items()})
        return logs

    def training_step(self, batch, batch_idx):
        frames, ids = self._unpack(batch)
        logs = self.compute_losses(frames, ids)
        logs["lr"] = torch.tensor(float(self.optimizers().param_groups[0]["lr"]), device=frames.device)
        self.log_dict({f"train/{k}": v.detach() for k, v in logs.items()}, on_step=True, on_epoch=False,
                      batch_size=frames.shape[0])
        return logs["loss"]

    def validation_step(self, batch, batch_idx, dataloader_idx: int = 0):
        frames, ids = self._unpack(batch)
        logs = self.compute_losses(frames, ids)
        self.log_dict({f"{self.val_prefix(dataloader_idx)}/{k}": v.detach() for k, v in logs.items()},
                      on_step=False, on_epoch=True, batch_size=frames.shape[0], add_dataloader_idx=False)
        return logs["loss"]


# ------------------------------------------------------------------------------------------------------------
# data (temporary, until mien.data provides clip DataModules)
def load_face_crops(video: str | os.PathLike, crop_size: int, start: float | None = None,
                    end: float | None = None, crop: str = "aligned-ffhq-0.0") -> np.ndarray:
    """Square face crops of the first tracked face in every frame that has one.

    Uses ``mien.analyze`` (boxes, landmarks), ``mien.io.video.VideoSource`` (frames) and
    :func:`mien.face.crops.face_crop` with the crop contract ``crop`` (default: the aligned crop of
    ``mien prepare`` with margin 0, without its temporal smoothing).

    Returns:
        uint8 (N, crop_size, crop_size, 3) RGB, in frame order (frames without a face are skipped).

    Raises:
        mien.errors.InputError: unreadable video.
    """
    import mien
    from mien.face.crops import face_crop
    from mien.io.video import VideoSource
    from mien.pipelines.tokens import first_faces

    faces = first_faces(mien.analyze(video, start=start, end=end))
    crops = [face_crop(fr.image, crop, crop_size, *faces[fr.index])
             for fr in VideoSource(video, start=start, end=end) if fr.index in faces]
    if not crops:
        return np.zeros((0, crop_size, crop_size, 3), np.uint8)
    return np.stack(crops)


class ClipTensorDataset(torch.utils.data.Dataset):
    """In-memory clips: ``frames`` uint8 (K, T, 3, H, W), ``subject_id`` long (K,) → batch dicts."""

    def __init__(self, frames: torch.Tensor, subject_id: torch.Tensor):
        self.frames, self.subject_id = frames, subject_id

    def __len__(self) -> int:
        return self.frames.shape[0]

    def __getitem__(self, i: int) -> dict:
        return {"frames": self.frames[i], "subject_id": self.subject_id[i]}


def clips_from_crops(crops: np.ndarray, clip_len: int, stride: int | None = None) -> torch.Tensor:
    """uint8 (N, H, W, 3) crops → uint8 (K, clip_len, 3, H, W) consecutive clips (hop ``stride``)."""
    stride = stride or clip_len
    x = torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2)
    starts = range(0, x.shape[0] - clip_len + 1, stride)
    if not len(starts):
        return torch.zeros((0, clip_len, *x.shape[1:]), dtype=torch.uint8)
    return torch.stack([x[s:s + clip_len] for s in starts])


class VideoCropsDataModule(pl.LightningDataModule):
    """Small in-memory DataModule: face crops of a few videos cut into clips (subject id = video index).

    Args:
        videos: video files (one subject each).
        crop_size: crop side (must equal the model's crop size).
        clip_len: frames T per clip; stride: hop between clips (default clip_len).
        start, end: time window in seconds.
        batch_size: clips per batch; val_videos: indices of ``videos`` used for validation only (else none).
        crop: crop contract of the crops (:func:`mien.face.crops.parse_crop_contract`); must equal the model's
            ``config.crop`` (checked when fitting).
    """

    def __init__(self, videos: list[str], crop_size: int = 64, clip_len: int = 8, stride: int | None = None,
                 start: float | None = None, end: float | None = 2.0, batch_size: int = 2,
                 val_videos: list[int] | None = None, crop: str = "aligned-ffhq-0.0", num_workers: int = 0):
        super().__init__()
        self.save_hyperparameters()
        self.crop_contract = crop
        self.train_set = self.val_set = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        h = self.hparams
        parts: dict[str, list] = {"train": [], "val": []}
        for i, v in enumerate(h.videos):
            clips = clips_from_crops(load_face_crops(v, h.crop_size, h.start, h.end, h.crop),
                                     h.clip_len, h.stride)
            split = "val" if h.val_videos and i in h.val_videos else "train"
            parts[split].append((clips, torch.full((clips.shape[0],), i, dtype=torch.long)))

        def cat(items):
            if not items:
                return None
            return ClipTensorDataset(torch.cat([c for c, _ in items]), torch.cat([s for _, s in items]))

        self.train_set, self.val_set = cat(parts["train"]), cat(parts["val"])
        if self.train_set is None or len(self.train_set) == 0:
            raise ValueError("no training clip: videos too short or no face found")

    def train_dataloader(self):
        return torch.utils.data.DataLoader(self.train_set, batch_size=self.hparams.batch_size, shuffle=True,
                                           num_workers=self.hparams.num_workers, drop_last=False)

    def val_dataloader(self):
        if self.val_set is None:
            return []
        return torch.utils.data.DataLoader(self.val_set, batch_size=self.hparams.batch_size,
                                           num_workers=self.hparams.num_workers)


# ------------------------------------------------------------------------------------------------------------
# CLI
def default_config(name: str = "tiny") -> Path:
    """Path of a shipped YAML config (``mien/configs/tokenizer/<name>.yaml``)."""
    from importlib.resources import files

    return Path(str(files("mien").joinpath("configs", "tokenizer", f"{name}.yaml")))


def cli_main(argv: list[str] | None = None, run: bool = True, task: str = "tokenizer"):
    """LightningCLI over a task and a DataModule subclass (``fit``/``validate``/``predict`` …).

    Args:
        argv: arguments as on a command line (None: ``sys.argv[1:]``).
        run: run the subcommand (False: only instantiate; then argv has no subcommand).
        task: "tokenizer" (:class:`TokenizerTask`) or "predictor" (:class:`PredictorTask`).

    Example::

        cli_main(["fit", "--config", str(default_config("tiny")),
                  "--data.init_args.videos=[a.mp4, b.mp4]", "--trainer.max_steps=50"])

    Returns:
        the ``LightningCLI`` object (its ``model``, ``datamodule`` and ``trainer``).

    Raises:
        ValueError: unknown task.
    """
    from lightning.pytorch.cli import LightningCLI

    tasks = {"tokenizer": TokenizerTask, "predictor": PredictorTask}
    if task not in tasks:
        raise ValueError(f"task must be one of {sorted(tasks)}, got {task!r}")
    return LightningCLI(tasks[task], pl.LightningDataModule, subclass_mode_data=True, args=argv, run=run,
                        save_config_kwargs={"overwrite": True})


__all__ = ["ClipTensorDataset", "PerceptualLoss", "PredictorTask", "TokenizerTask", "VideoCropsDataModule", "WarmupDecaySchedule",
           "cli_main", "clips_from_crops", "default_config", "diversity_loss", "export_checkpoint",
           "load_face_crops", "motion_weights", "prediction_losses", "similarity_stats", "temporal_losses",
           "variance_loss"]
