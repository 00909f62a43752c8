"""Joint training of the expression tokenizer (expression transformer + reconstruction) with Lightning:
:class:`TokenizerTask`, and :class:`ScheduledTask`, the base it shares with
:class:`~mien.tasks.tokenizer.predictor.PredictorTask`.

Losses (:mod:`mien.tasks.tokenizer.losses`; seed 1 ``ExpressionReconstructionLoss``, DIGEST §1.3), computed
batched over clips (B, T):

* reconstruction: ``mse`` | ``l1`` | ``mse+l1`` between reconstruction and input in [0, 1] RGB pixels, plus an
  optional perceptual term (L1 between feature maps of a frozen timm net);
* temporal = ``coherence_weight``·coherence + ``contrast_weight``·contrast, with coherence =
  mean_t(1 − cos(z_t, z_{t+1})) and contrast = mean_t |cos(z_t, z_{t+s})| (s = ``contrast_stride``; 0 if T ≤ s);
* diversity = clamp(mean off-diagonal cos of z[::``diversity_stride``], min 0) within each clip (seed), or
  over the whole batch (``diversity_scope="batch"``).

Every loss weight and the learning rate follow the same piecewise-linear
:class:`~mien.tasks.schedules.WarmupDecaySchedule` (initial → peak over ``warmup_steps``, then peak → final until
``total_steps``). Unlike the seed's joint run (initial LR = peak LR), the LR warm-up really warms up: it starts
at ``lr_initial`` (default ``min_lr``).

Batches: ``{"frames": (B, T, 3, H, W) float [0, 1] or uint8 RGB, "subject_id": (B,) long (optional)}``, or
batches of mien shards (:class:`mien.data.datamodule.ClipDataModule`). Export:
:func:`mien.export.tokenizer.export_checkpoint` (``mien export tokenizer``).
"""

from __future__ import annotations

import os
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch

from mien.models.registry import create_model
from mien.models.tokenizer.nets import ExpressionTokenizer
from mien.tasks.config import as_config, as_dict
from mien.tasks.schedules import WarmupDecaySchedule, lambda_lr
from mien.tasks.tokenizer.config import ScheduleConfig, TokenizerLoss, TokenizerWeights
from mien.tasks.tokenizer.data import batch_landmarks, unpack_batch
from mien.tasks.tokenizer.losses import (
    ExpressionNetLoss,
    PerceptualLoss,
    diversity_loss,
    motion_weights,
    similarity_stats,
    temporal_losses,
    variance_loss,
)

__all__ = ["ScheduledTask", "TokenizerTask"]


class ScheduledTask(pl.LightningModule):
    """Shared LR + loss-weight schedule (:class:`~mien.tasks.schedules.WarmupDecaySchedule`) and AdamW set-up.

    Subclasses call :meth:`_init_schedule` with their :class:`~mien.tasks.tokenizer.config.ScheduleConfig` and
    loss-weight dataclass (one (initial, peak, final) field per loss term).
    """

    def _init_schedule(self, schedule, weights, weights_cls) -> None:
        self.schedule_cfg = as_config(ScheduleConfig, schedule)
        self.weights_cfg = as_config(weights_cls, weights)
        self._total_steps = self.schedule_cfg.total_steps

    @property
    def loss_names(self) -> tuple[str, ...]:
        """Names of the scheduled loss terms (the fields of the weights config)."""
        return tuple(as_dict(self.weights_cfg))

    # ---- schedules -----------------------------------------------------------------------------------------
    def total_steps(self) -> int:
        if self._total_steps is not None:
            return int(self._total_steps)
        est = getattr(self.trainer, "estimated_stepping_batches", None) if self._trainer is not None else None
        if est is None or not np.isfinite(est):
            raise ValueError("total_steps is not set and the trainer cannot estimate it")
        self._total_steps = max(int(est), self.schedule_cfg.warmup_steps)
        return self._total_steps

    def lr_schedule(self) -> WarmupDecaySchedule:
        h = self.schedule_cfg
        init = h.min_lr if h.lr_initial is None else h.lr_initial
        return WarmupDecaySchedule(init, h.lr, h.min_lr, h.warmup_steps, self.total_steps(), floor=h.min_lr)

    def weight_schedules(self) -> dict[str, WarmupDecaySchedule]:
        w, total = as_dict(self.weights_cfg), self.total_steps()
        return {k: WarmupDecaySchedule(*v, self.schedule_cfg.warmup_steps, total) for k, v in w.items()}

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
        h = self.schedule_cfg
        opt = torch.optim.AdamW(params, lr=h.lr, weight_decay=h.weight_decay, betas=tuple(h.betas))
        return {"optimizer": opt, "lr_scheduler": lambda_lr(opt, self.lr_schedule(), scale=h.lr)}


class TokenizerTask(ScheduledTask):
    """LightningModule training an :class:`~mien.models.tokenizer.nets.ExpressionTokenizer`.

    Args:
        model: registered tokenizer name (``mien.list_models("tokenizer")``).
        model_overrides: keyword overrides of the registered config (e.g. ``{"pretrained": False}``).
        schedule: AdamW and LR schedule (:class:`~mien.tasks.tokenizer.config.ScheduleConfig`; ``total_steps``
            None: the trainer's estimated stepping batches).
        weights: (initial, peak, final) loss weights scheduled like the LR
            (:class:`~mien.tasks.tokenizer.config.TokenizerWeights`).
        loss: definitions of the loss terms (:class:`~mien.tasks.tokenizer.config.TokenizerLoss`).
        freeze_expression_transformer: freeze the whole expression transformer (subject embeddings and delta
            positions included; kept in eval mode) and optimise only the rest, as the seed's fine-tuning run.
        cache_backbone_tokens: keep the frozen timm backbone's patch tokens of every sample (by its shard key,
            float16 in CPU memory) so later epochs skip the backbone; needs keyed batches (mien shards).
        init_from: an exported tokenizer folder (``mien export tokenizer``) whose weights initialise the model — a
            second stage; only the warp decoder's refiner may be absent from it (``warp_refiner_width`` 0 there:
            the refiner starts at zero, the output at the loaded model's warp), see
            :func:`mien.models.tokenizer.export.load_weights_into`.

    Logged every step (``train/``) and per epoch (``val/``, or ``val_<set>/`` per validation set, see
    :meth:`val_prefix`): loss, loss_recon, loss_perceptual, loss_temporal, loss_coherence, loss_contrast,
    loss_diversity, loss_variance, w_recon, w_temporal, w_diversity, w_perceptual, w_variance, lr,
    sim_mean/std/min/max (within-clip token cosine).
    """

    def __init__(self, model: str = "tokenizer-tiny", model_overrides: dict | None = None,
                 schedule: ScheduleConfig = ScheduleConfig(), weights: TokenizerWeights = TokenizerWeights(),  # noqa: B008
                 loss: TokenizerLoss = TokenizerLoss(), freeze_expression_transformer: bool = False,  # noqa: B008
                 cache_backbone_tokens: bool = False, init_from: str | None = None):
        super().__init__()
        self._init_schedule(schedule, weights, TokenizerWeights)
        self.loss_cfg = as_config(TokenizerLoss, loss)
        self.freeze_expression_transformer = bool(freeze_expression_transformer)
        self.cache_backbone_tokens = bool(cache_backbone_tokens)
        self.save_hyperparameters({"model": model, "model_overrides": model_overrides,
                                   "schedule": as_dict(self.schedule_cfg), "weights": as_dict(self.weights_cfg),
                                   "loss": as_dict(self.loss_cfg),
                                   "freeze_expression_transformer": self.freeze_expression_transformer,
                                   "cache_backbone_tokens": self.cache_backbone_tokens, "init_from": init_from})
        self.model: ExpressionTokenizer = create_model(model, **(model_overrides or {}))
        if not isinstance(self.model, ExpressionTokenizer):
            raise TypeError(f"{model!r} is not an expression tokenizer")
        if init_from:
            from mien.models.tokenizer.export import load_weights_into

            load_weights_into(self.model, init_from)
        cfg = self.model.config
        if cfg.decoder == "warp" and cfg.warp_bank > 0 and cfg.warp_refiner_width > 0 and \
                bool((self.model.reconstruction.bank_count == 0).all()):
            raise ValueError("warp_bank is added after training: train with warp_bank 0, then `mien export tokenizer "
                             "CKPT --bank N --bank-data DATASET` (or start from a banked export with init_from)")
        c = self.loss_cfg
        self.perceptual = PerceptualLoss(c.perceptual_net, c.perceptual_pretrained) if c.perceptual_net else None
        w = as_dict(self.weights_cfg)
        self.expression_terms = tuple(k for k in ("expression", "emotion", "swap_emotion") if max(w[k]) > 0)
        self.expression_loss = ExpressionNetLoss() if self.expression_terms else None
        if freeze_expression_transformer:
            self.model.expression.requires_grad_(False)
            self.model.expression.eval()
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
        if not self.cache_backbone_tokens or not isinstance(batch, dict) or "__key__" not in batch \
                or not self.model.config.encoder_patches:
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

    def condition_for(self, batch, frames: torch.Tensor) -> torch.Tensor | None:
        """Global conditioning features (B, T, G) of a (B, T, 3, H, W) [0, 1] batch when the model has
        ``global_condition`` (:func:`mien.models.tokenizer.condition.global_condition`, MediaPipe + face-api on
        each crop; cached per shard key when the batch has keys), else None."""
        cfg = self.model.config
        if cfg.global_dim <= 0:
            return None
        from mien.models.tokenizer.condition import global_condition

        keys = list(batch["__key__"]) if isinstance(batch, dict) and "__key__" in batch else None
        cache = self.__dict__.setdefault("_condition_cache", {})
        todo = [i for i in range(frames.shape[0]) if keys is None or keys[i] not in cache]
        fresh = {}
        if todo:
            crops = (frames[todo].detach().flatten(0, 1).clamp(0, 1) * 255).round().byte()
            g, _ = global_condition(crops.permute(0, 2, 3, 1).cpu().numpy(), cfg.global_condition)
            g = torch.from_numpy(g).unflatten(0, (len(todo), frames.shape[1]))
            for j, i in enumerate(todo):
                fresh[i] = g[j]
                if keys is not None:
                    cache[keys[i]] = g[j]
        rows = [fresh[i] if i in fresh else cache[keys[i]] for i in range(frames.shape[0])]
        return torch.stack(rows).to(frames.device, frames.dtype)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.freeze_expression_transformer:
            self.model.expression.eval()
        return self

    # ---- steps ---------------------------------------------------------------------------------------------
    def compute_losses(self, frames: torch.Tensor, subject_ids=None, weights: dict[str, float] | None = None,
                       backbone_tokens: torch.Tensor | None = None, condition: torch.Tensor | None = None,
                       landmarks: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """All loss components and the weighted total for a (B, T, 3, H, W) [0, 1] batch (``backbone_tokens``:
        cached frozen-backbone tokens of its frames, see :meth:`backbone_tokens_for`; ``condition``: global
        features (B, T, G), computed by :meth:`condition_for` when None and the model needs them; ``landmarks``:
        (B, T, K ≥ 468, 2) px of the frames, the warp decoder's landmark target — its subjects without a
        reference face get the clip's first frame, :meth:`ensure_references`)."""
        h = self.loss_cfg
        w = weights or self.loss_weights()
        if condition is None:
            condition = self.condition_for(None, frames)
        warp = self.model.config.decoder == "warp"
        if warp:
            if landmarks is None:
                raise ValueError("the warp decoder trains on landmarks: batches need 'landmarks' (mien shards)")
            self.ensure_references(frames, subject_ids, landmarks)
        # the warp decoder without refinement has nothing to learn from pixels: skip the warp (points only)
        draw = not warp or self.model.reconstruction.refiner is not None
        out = self.model(frames, subject_ids, backbone_tokens=backbone_tokens, condition=condition, draw=draw)
        if not draw:
            return self._points_only_losses(out, frames, landmarks, w)
        pred, target = out.recon.flatten(0, 1), frames.flatten(0, 1)
        err = 0
        if h.recon in ("mse", "mse+l1"):
            err = err + (pred - target).square()
        if h.recon in ("l1", "mse+l1"):
            err = err + (pred - target).abs()
        if h.motion_gain:
            wm = motion_weights(frames, h.motion_gain).flatten(0, 1)
            recon = (err * wm).mean() / wm.mean()
        else:
            recon = err.mean()
        perc = self.perceptual(pred, target) if self.perceptual is not None else pred.new_zeros(())
        tok = self._token_losses(out.tokens)
        expr = self.expression_losses(out, frames, subject_ids, backbone_tokens)
        if warp:
            expr["landmarks"] = _landmark_loss(out.points, landmarks, frames.shape[-1])
        total = (w["recon"] * recon + w["perceptual"] * perc + _weighted(tok, w)
                 + sum(w.get(k, 0.0) * v for k, v in expr.items()))
        logs = {"loss": total, "loss_recon": recon, "loss_perceptual": perc, **tok,
                **{f"loss_{k}": v for k, v in expr.items()}}
        logs.update({f"w_{k}": torch.tensor(float(v), device=frames.device) for k, v in w.items()})
        logs.update(similarity_stats(out.tokens))
        return logs

    def _token_losses(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        """The terms on the tokens alone (temporal coherence/contrast, diversity, variance), by log name."""
        h = self.loss_cfg
        coherence, contrast = temporal_losses(tokens, h.contrast_stride)
        temporal = h.coherence_weight * coherence + h.contrast_weight * contrast
        div = diversity_loss(tokens, h.diversity_stride, h.diversity_scope)
        var = variance_loss(tokens, h.variance_target)
        return {"loss_temporal": temporal, "loss_coherence": coherence, "loss_contrast": contrast,
                "loss_diversity": div, "loss_variance": var}

    def _points_only_losses(self, out, frames: torch.Tensor, landmarks: torch.Tensor, w: dict) -> dict:
        """Losses of a warp decoder without refinement (``out.recon`` None): the landmark term and the terms on the
        tokens; the pixel terms are 0 (they have no trainable parameter)."""
        lm = _landmark_loss(out.points, landmarks, frames.shape[-1])
        tok = self._token_losses(out.tokens)
        zero = frames.new_zeros(())
        logs = {"loss": w.get("landmarks", 0.0) * lm + _weighted(tok, w), "loss_landmarks": lm, "loss_recon": zero,
                **tok}
        logs.update({f"w_{k}": torch.tensor(float(v), device=frames.device) for k, v in w.items()})
        logs.update(similarity_stats(out.tokens))
        return logs

    def ensure_references(self, frames: torch.Tensor, subject_ids, landmarks: torch.Tensor) -> None:
        """Warp decoder: give every subject of the batch that has no reference face yet the first frame of its
        first clip here (crop and landmarks). Runs that choose references beforehand
        (:func:`mien.models.tokenizer.warp.reference_frames`, :meth:`WarpDecoder.set_references`) are unchanged.

        Args:
            frames: float (B, T, 3, S, S) RGB [0, 1] crops; subject_ids: int (B,); landmarks: float (B, T, K ≥ 468,
                ≥2) in the crops' pixels.
        """
        dec = self.model.reconstruction
        ids = torch.as_tensor(subject_ids).long().reshape(-1)
        unset = (~dec.ref_set[ids.to(dec.ref_set.device)]).cpu().tolist()  # one lookup, one host sync
        new: dict[int, int] = {}
        for i, (sid, todo) in enumerate(zip(ids.tolist(), unset, strict=True)):
            if todo and sid not in new:
                new[sid] = i
        if new:
            rows = list(new.values())
            dec.set_references(list(new), frames[rows, 0].detach(), landmarks[rows, 0].detach().cpu())

    def expression_losses(self, out, frames: torch.Tensor, subject_ids=None,
                          backbone_tokens: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The configured expression terms (``expression``, ``emotion``, ``swap_emotion``; see
        :class:`~mien.tasks.tokenizer.config.TokenizerWeights`) of a forward pass ``out`` on (B, T, 3, H, W)
        ``frames``; {} when none is configured. The input's FaceExpressionNet map is the cached backbone tokens
        when the tokenizer's backbone is that same map (``faceapi-expression``). ``swap_emotion`` decodes every other
        frame's token with the subject of the previous clip in the batch (``roll(1)``) and is 0 when no clip has
        another subject (or the model has no subject embedding)."""
        if self.expression_loss is None:
            return {}
        xl, terms = self.expression_loss, self.expression_terms
        b, t = frames.shape[:2]
        if backbone_tokens is not None and self.model.config.backbone == "faceapi-expression":
            tmap = xl.as_map(backbone_tokens.detach().float())
        else:
            with torch.no_grad():
                tmap = xl.feature_map(frames.flatten(0, 1))
        with torch.no_grad():
            tprobs = xl.log_probs(tmap).exp()
        res = xl(out.recon.flatten(0, 1), target_map=tmap, target_probs=tprobs)
        logs = {k: res[r] for k, r in (("expression", "feature"), ("emotion", "emotion")) if k in terms}
        if "swap_emotion" in terms:
            logs["swap_emotion"] = frames.new_zeros(())
            ids = None if subject_ids is None or self.model.config.max_subjects <= 0 else \
                torch.as_tensor(subject_ids, device=frames.device).long().reshape(-1)
            if ids is not None and ids.numel() == b:
                other = ids.roll(1)
                keep = other != ids
                if keep.any():
                    z = out.tokens[keep][:, ::2]
                    swapped = self.model.decode(z, other[keep], ids[keep])  # (b', t', 3, H, W), as at inference
                    p = tprobs.unflatten(0, (b, t))[keep][:, ::2].flatten(0, 1)
                    logs["swap_emotion"] = torch.nn.functional.kl_div(
                        xl.log_probs(xl.feature_map(swapped.flatten(0, 1))), p, reduction="batchmean")
        return logs

    def training_step(self, batch, batch_idx):
        frames, ids = unpack_batch(batch, self.model.config.crop_size)
        logs = self.compute_losses(frames, ids, backbone_tokens=self.backbone_tokens_for(batch, frames),
                                   condition=self.condition_for(batch, frames),
                                   landmarks=batch_landmarks(batch, frames))
        logs["lr"] = torch.tensor(float(self.optimizers().param_groups[0]["lr"]), device=frames.device)
        self.log_dict({f"train/{k}": v.detach() if torch.is_tensor(v) else v for k, v in logs.items()},
                      on_step=True, on_epoch=False, prog_bar=False, batch_size=frames.shape[0])
        self.log("loss", logs["loss"].detach(), prog_bar=True, on_step=True, batch_size=frames.shape[0])
        return logs["loss"]

    def validation_step(self, batch, batch_idx, dataloader_idx: int = 0):
        frames, ids = unpack_batch(batch, self.model.config.crop_size)
        logs = self.compute_losses(frames, ids, backbone_tokens=self.backbone_tokens_for(batch, frames),
                                   condition=self.condition_for(batch, frames),
                                   landmarks=batch_landmarks(batch, frames))
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
            out = self.model(frames, ids, condition=self.condition_for(None, frames))
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
        frames, ids = unpack_batch(batch, self.model.config.crop_size)
        return self.model.encode(frames, ids, self.condition_for(batch, frames))

    def export(self, directory: str | os.PathLike) -> Path:
        """Write the model as ``config.json`` + ``model.safetensors`` (see :func:`save_pretrained`).

        Raises:
            ValueError: a warp decoder with exemplar banks (``warp_bank`` > 0) whose subjects with a reference have
                no bank yet, or with no bank at all (fill them first: :func:`mien.tasks.tokenizer.banks.fill_banks`, ``--bank-data``).
        """
        from mien.models.tokenizer.export import save_pretrained

        dec = getattr(self.model, "reconstruction", None)
        if getattr(dec, "bank_size", 0) > 0:
            missing = (dec.ref_set.bool() & (dec.bank_count == 0)).nonzero().flatten().tolist()
            if missing or not bool((dec.bank_count > 0).any()):
                which = f"for subject id(s) {missing}" if missing else "for every subject"
                raise ValueError(f"the warp decoder's exemplar banks are empty {which}: export "
                                 "with --bank-data DATASET (the training shards)")

        return save_pretrained(self.model, directory)


def _weighted(tok: dict[str, torch.Tensor], w: dict) -> torch.Tensor:
    """Σ weight · term of :meth:`TokenizerTask._token_losses` (temporal, diversity, variance)."""
    return w["temporal"] * tok["loss_temporal"] + w["diversity"] * tok["loss_diversity"] + \
        w.get("variance", 0.0) * tok["loss_variance"]


def _landmark_loss(points: torch.Tensor, landmarks: torch.Tensor, side: int) -> torch.Tensor:
    """Mean distance of the warp decoder's points (…, K, 2) crop px to the shard landmarks (…, ≥K, ≥2), in units
    of the crop side ``side`` px."""
    return (points - landmarks[..., :points.shape[-2], :2]).norm(dim=-1).mean() / side
