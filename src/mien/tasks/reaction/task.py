"""Lightning tasks of listener-reaction generation (seed 4, UniFaRN; DIGEST §4.4):

* :class:`ReactionTokenizerTask` — trains the FSQ tokenizer on listener attributes (NaN-masked MSE), or fits
  the seed's tables (``reaction-seed-tokenizer``: no gradient steps); logs the held-out reconstruction error.
* :class:`ReactionTask` — the unified transformer on a frozen tokenizer with SLM + MRM + CRM:

  - SLM: CE of the CLS head, class 1 for (speaker, its listener — with probability ``shuffle_listener`` another
    listener marked appropriate for it), class 0 for (speaker, the listener of another session not marked
    appropriate);
  - MRM: per sample r ~ U(0, 1), each stream hides ``ceil(L·cos(πr/2))`` random tokens (MaskGIT cosine); CE of the
    bidirectional path at the hidden positions plus ``mrm_extra_rate`` of the others;
  - CRM: CE of the chunk-causal path for every step, teacher-forced, without target leakage (the transformer's
    visibility rule).

  Listener tokens whose window has no finite value (face missing) are hidden in the input and excluded from
  every loss; NaN dimensions are already masked in the tokenizer's training.

Both use AdamW with a warm-up/hold/cosine LR (:class:`mien.tasks.schedules.WarmupDecaySchedule`) and log to
TensorBoard (``train/…``, ``val/…``). AMP and DDP come from the trainer (``precision: 16-mixed``,
``strategy: ddp``); resume with ``--ckpt_path``. Export: :mod:`mien.export.reaction`.
"""

from __future__ import annotations

import os
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
import torch.nn.functional as F

from mien.models.reaction.decoding import mask_count
from mien.models.reaction.model import (
    ReactionModel,
    load_reaction_tokenizer,
    save_reaction_model,
    save_reaction_tokenizer,
)
from mien.models.registry import create_model
from mien.tasks.config import as_config, as_dict
from mien.tasks.reaction.config import ReactionLoss, ReactionSchedule
from mien.tasks.schedules import WarmupDecaySchedule, lambda_lr

__all__ = ["ReactionTask", "ReactionTokenizerTask"]


class _Scheduled(pl.LightningModule):
    def _schedule(self) -> WarmupDecaySchedule:
        h = self.schedule_cfg
        total = h.total_steps
        if total is None:
            total = int(self.trainer.estimated_stepping_batches)
        return WarmupDecaySchedule(h.lr_initial, h.lr, h.min_lr, h.warmup_steps, max(total, h.warmup_steps + h.hold_steps),
                                   floor=h.min_lr, decay="cosine", hold_steps=h.hold_steps)

    def configure_optimizers(self):
        params = [(n, p) for n, p in self.named_parameters() if p.requires_grad]
        if not params:
            return None
        h = self.schedule_cfg
        decay = [p for n, p in params if n.endswith(".weight") and p.ndim == 2 and "emb" not in n]
        rest = [p for n, p in params if not (n.endswith(".weight") and p.ndim == 2 and "emb" not in n)]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": h.weight_decay},
                                 {"params": rest, "weight_decay": 0.0}], lr=h.lr, betas=tuple(h.betas))
        return {"optimizer": opt, "lr_scheduler": lambda_lr(opt, self._schedule(), scale=h.lr)}

    def _log_lr(self) -> None:
        groups = self.trainer.optimizers[0].param_groups if self._trainer is not None and self.trainer.optimizers else []
        if groups:  # none when there is nothing to optimise (the seed tokenizer)
            self.log("train/lr", float(groups[0]["lr"]), on_step=True)


class ReactionTokenizerTask(_Scheduled):
    """Train (FSQ) or fit (seed) a listener-reaction tokenizer.

    Args:
        tokenizer: registered name (``reaction-fsq``, ``reaction-seed-tokenizer``); tokenizer_overrides: its
            keyword overrides (e.g. ``{"window": 5, "levels": [8, 5, 5, 5]}``).
        schedule: AdamW + LR (:class:`~mien.tasks.reaction.config.ReactionSchedule`).
        seed_n_exp: expression k-means clusters of the seed tokenizer.

    Logged: ``train/recon_mse``, ``val/recon_mse`` and per group ``val/mse_au|va|exp`` over finite targets,
    ``val/code_usage`` (fraction of the vocabulary used).
    """

    def __init__(self, tokenizer: str = "reaction-fsq", tokenizer_overrides: dict | None = None,
                 schedule: ReactionSchedule = ReactionSchedule(), seed_n_exp: int = 64):  # noqa: B008
        super().__init__()
        self.schedule_cfg = as_config(ReactionSchedule, schedule)
        self.save_hyperparameters({"tokenizer": tokenizer, "tokenizer_overrides": tokenizer_overrides,
                                   "schedule": as_dict(self.schedule_cfg), "seed_n_exp": seed_n_exp})
        self.tokenizer = create_model(tokenizer, **(tokenizer_overrides or {}))
        self.is_seed = self.tokenizer.config()["kind"] == "seed"
        self.automatic_optimization = not self.is_seed
        self.last_val: dict[str, float] = {}

    def on_fit_start(self) -> None:
        if self.is_seed and self.global_step == 0:
            dm = self.trainer.datamodule
            attrs = torch.from_numpy(np.stack([it["listener_attrs"] for it in dm.train_items()]))
            fitted = self.tokenizer.fit(attrs, n_exp=self.hparams.seed_n_exp)
            self.tokenizer = fitted.to(self.device)

    def _errors(self, attrs: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.is_seed:
            tokens, _ = self.tokenizer.encode(attrs)
            rec = self.tokenizer.decode(tokens)
            m = torch.isfinite(attrs)
            err = (rec - torch.nan_to_num(attrs, nan=0.0)).square() * m
            mse = err.sum() / m.sum().clamp(min=1)
        else:
            mse, rec = self.tokenizer.loss(attrs)
            m = torch.isfinite(attrs)
            err = (rec - torch.nan_to_num(attrs, nan=0.0)).square() * m
        out = {"recon_mse": mse}
        for name, sl in (("au", slice(0, 15)), ("va", slice(15, 17)), ("exp", slice(17, 25))):
            out[f"mse_{name}"] = err[..., sl].sum() / m[..., sl].sum().clamp(min=1)
        return out

    def training_step(self, batch, batch_idx):
        logs = self._errors(batch["listener_attrs"])
        self.log_dict({f"train/{k}": v.detach() for k, v in logs.items()}, on_step=True, batch_size=len(batch["index"]))
        self._log_lr()
        return None if self.is_seed else logs["recon_mse"]

    def validation_step(self, batch, batch_idx):
        attrs = batch["listener_attrs"]
        logs = self._errors(attrs)
        tokens, valid = self.tokenizer.encode(attrs)
        used = torch.zeros(self.tokenizer.vocab_sizes[0], device=attrs.device)
        used[tokens[..., 0][valid[..., 0]]] = 1
        logs["code_usage"] = used.mean()
        self.log_dict({f"val/{k}": v for k, v in logs.items()}, on_epoch=True, batch_size=len(batch["index"]))

    def on_validation_epoch_end(self) -> None:
        self.last_val = {k: float(v) for k, v in self.trainer.callback_metrics.items() if k.startswith("val/")}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["mien_reaction_val"] = dict(self.last_val)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.last_val = dict(checkpoint.get("mien_reaction_val", {}))
        if self.is_seed:  # the fitted tables' sizes come from the checkpoint
            from mien.models.reaction.tokenizers import SeedTokenizer

            sd = {k[len("tokenizer."):]: v for k, v in checkpoint["state_dict"].items() if k.startswith("tokenizer.")}
            self.tokenizer = SeedTokenizer(sd["au_table"].shape[0], sd["va_table"].shape[0], sd["exp_centres"].shape[0],
                                           self.tokenizer.va_step)

    def export(self, directory: str | os.PathLike) -> Path:
        """Write the tokenizer (``config.json`` + ``model.safetensors``, with the last validation errors)."""
        return save_reaction_tokenizer(self.tokenizer, directory, metrics=self.last_val)


class ReactionTask(_Scheduled):
    """Train the unified transformer (module doc).

    Args:
        tokenizer: folder of an exported reaction tokenizer (``mien export reaction`` of a tokenizer run).
        speaker_feature_names: the D_s speaker feature names (linked from the data module by ``mien train``).
        model: registered transformer (``reaction-tiny``, ``reaction-base``); model_overrides: its overrides.
        online_chunk: token steps per online chunk (CRM training and online decoding).
        maskgit_steps: default MaskGIT steps of the exported model.
        fps: frame rate of the data (linked from the data module by ``mien train``).
        schedule, loss: :class:`~mien.tasks.reaction.config.ReactionSchedule`, :class:`ReactionLoss`.
    """

    def __init__(self, tokenizer: str, speaker_feature_names: list[str], model: str = "reaction-tiny",
                 model_overrides: dict | None = None, online_chunk: int = 1, maskgit_steps: int = 8, fps: float = 25.0,
                 schedule: ReactionSchedule = ReactionSchedule(), loss: ReactionLoss = ReactionLoss()):  # noqa: B008
        super().__init__()
        self.schedule_cfg = as_config(ReactionSchedule, schedule)
        self.loss_cfg = as_config(ReactionLoss, loss)
        self.save_hyperparameters({"tokenizer": str(tokenizer), "speaker_feature_names": list(speaker_feature_names),
                                   "model": model, "model_overrides": model_overrides, "online_chunk": online_chunk,
                                   "maskgit_steps": maskgit_steps, "fps": fps, "schedule": as_dict(self.schedule_cfg),
                                   "loss": as_dict(self.loss_cfg)})
        tok = load_reaction_tokenizer(tokenizer).requires_grad_(False)
        net = create_model(model, speaker_dim=len(speaker_feature_names), frames_per_token=tok.frames_per_token,
                           vocab_sizes=tuple(tok.vocab_sizes), online_chunk=online_chunk, **(model_overrides or {}))
        self.model = ReactionModel(tok, net, list(speaker_feature_names), {"maskgit_steps": maskgit_steps}, fps)
        self.register_buffer("stats_ready", torch.tensor(False))

    def train(self, mode: bool = True):
        super().train(mode)
        self.model.tokenizer.eval()
        return self

    def on_fit_start(self) -> None:
        """Speaker-feature normalisation and the observed listener attributes from the training windows (once;
        restored from checkpoints)."""
        if bool(self.stats_ready):
            return
        dm = self.trainer.datamodule
        items = dm.train_items() if getattr(dm.hparams, "in_memory", True) else dm.iter_train()
        d = self.model.speaker_mean.shape[0]
        s1, s2, cnt, seen = np.zeros(d), np.zeros(d), np.zeros(d), np.zeros(25, bool)
        for it in items:  # streaming sums: the full REACT set does not fit in memory at once
            x = it["speaker"].astype(np.float64)
            ok = np.isfinite(x)
            x = np.where(ok, x, 0.0)
            s1 += x.sum(0)
            s2 += (x * x).sum(0)
            cnt += ok.sum(0)
            seen |= np.isfinite(it["listener_attrs"]).any(0)
        mean = s1 / np.maximum(cnt, 1)
        std = np.sqrt(np.maximum(s2 / np.maximum(cnt, 1) - mean ** 2, 0.0))
        self.model.speaker_mean.copy_(torch.from_numpy(mean).float())
        self.model.speaker_std.copy_(torch.from_numpy(np.where(std > 1e-6, std, 1.0)).float())
        self.model.observed.copy_(torch.from_numpy(seen))
        self.stats_ready.fill_(True)

    # ---- losses ----------------------------------------------------------------------------------------------
    @staticmethod
    def _ce(logits: list[torch.Tensor], tokens: torch.Tensor, scored: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean CE and accuracy over the scored (B, L, S) positions of every stream."""
        tot, acc, n = 0.0, 0.0, scored.sum().clamp(min=1)
        for s, lg in enumerate(logits):
            ce = F.cross_entropy(lg.float().flatten(0, 1), tokens[..., s].flatten(), reduction="none")
            m = scored[..., s].flatten().float()
            tot = tot + (ce * m).sum()
            acc = acc + ((lg.argmax(-1).flatten() == tokens[..., s].flatten()).float() * m).sum()
        return tot / n, acc / n

    def _appropriate(self, idx: torch.Tensor) -> torch.Tensor | None:
        a = getattr(getattr(self._trainer, "datamodule", None), "appropriateness", None) if self._trainer else None
        if a is None:
            return None
        a = torch.as_tensor(a, device=idx.device)
        if idx.max() >= a.shape[0]:
            return None
        return a[idx][:, idx]

    def compute_losses(self, batch, train: bool = True) -> dict[str, torch.Tensor]:
        c, net = self.loss_cfg, self.model.transformer
        spk = self.model.normalise_speaker(batch["speaker"])
        with torch.no_grad():
            tokens, valid = self.model.tokenizer.encode(batch["listener_attrs"])
        b, n_steps, s = tokens.shape
        dev = tokens.device
        out: dict[str, torch.Tensor] = {}
        total = spk.new_zeros(())
        if c.mrm > 0:
            r = torch.rand(b, 1, s, device=dev)
            n_mask = mask_count(r, n_steps)  # (B, 1, S)
            rank = torch.rand(b, n_steps, s, device=dev).argsort(1).argsort(1)
            hide = rank < n_mask
            extra = torch.rand(b, n_steps, s, device=dev) < c.mrm_extra_rate
            logits = net.forward_offline(spk, tokens, hide | ~valid)
            out["loss_mrm"], out["acc_mrm"] = self._ce(logits, tokens, (hide | extra) & valid)
            total = total + c.mrm * out["loss_mrm"]
        if c.crm > 0:
            logits = net.forward_online(spk, tokens, valid)
            out["loss_crm"], out["acc_crm"] = self._ce(logits, tokens, valid)
            total = total + c.crm * out["loss_crm"]
        if c.slm > 0 and b > 1:
            a = self._appropriate(batch["index"])
            pos_tok, pos_valid = tokens, valid
            if train and a is not None and c.shuffle_listener > 0:
                alt = a & ~torch.eye(b, dtype=torch.bool, device=dev)
                swap = (torch.rand(b, device=dev) < c.shuffle_listener) & alt.any(1)
                j = torch.where(swap, torch.multinomial(alt.float() + 1e-9, 1).squeeze(1), torch.arange(b, device=dev))
                pos_tok, pos_valid = tokens[j], valid[j]
            perm = torch.roll(torch.arange(b, device=dev), 1)
            sess = batch["session"]
            neg = torch.tensor([sess[i] != sess[int(perm[i])] for i in range(b)], device=dev)
            if a is not None:
                neg &= ~a[torch.arange(b, device=dev), perm]
            spk2 = torch.cat([spk, spk[neg]])
            tok2, val2 = torch.cat([pos_tok, tokens[perm][neg]]), torch.cat([pos_valid, valid[perm][neg]])
            labels = torch.cat([torch.ones(b, dtype=torch.long, device=dev),
                                torch.zeros(int(neg.sum()), dtype=torch.long, device=dev)])
            lg = net.forward_slm(spk2, tok2, val2)
            out["loss_slm"] = F.cross_entropy(lg.float(), labels)
            out["acc_slm"] = (lg.argmax(-1) == labels).float().mean()
            total = total + c.slm * out["loss_slm"]
        out["loss"] = total
        return out

    def training_step(self, batch, batch_idx):
        logs = self.compute_losses(batch, train=True)
        self.log_dict({f"train/{k}": v.detach() for k, v in logs.items()}, on_step=True, batch_size=len(batch["index"]))
        self.log("loss", logs["loss"].detach(), prog_bar=True, on_step=True, batch_size=len(batch["index"]))
        self._log_lr()
        return logs["loss"]

    def validation_step(self, batch, batch_idx):
        logs = self.compute_losses(batch, train=False)
        self.log_dict({f"val/{k}": v for k, v in logs.items()}, on_epoch=True, batch_size=len(batch["index"]))

    def export(self, directory: str | os.PathLike) -> Path:
        """Write the :class:`ReactionModel` (``config.json`` + ``model.safetensors``)."""
        metrics = {k: float(v) for k, v in self.trainer.callback_metrics.items() if k.startswith("val/")} \
            if self._trainer is not None else {}
        return save_reaction_model(self.model, directory, metrics=metrics)
