"""Training of the one-shot reenactment family with Lightning: :class:`ReenactTask`, stages ``base → hr → student``
and the hybrid ``warpguided``.

* ``base``: :class:`~mien.models.reenact.ReenactModel` from scratch on self-reenactment pairs (source and driver
  of one clip) plus cross-identity pairs (the source of another subject in the batch, same driver).
* ``hr``: a 2× :class:`~mien.models.reenact.extra.GHR` on a frozen exported base model (``teacher``), trained
  against the driver at 2× resolution (tiny: the 128² shard crop for a 64² base).
* ``student``: a per-avatar :class:`~mien.models.reenact.Student` distilled from a frozen exported model: the
  first ``num_avatars`` training sources of distinct subjects become the avatars; the target is the teacher's
  output for (avatar source, driver).
* ``warpguided``: a :class:`~mien.models.reenact.warpguided.WarpGuidedRefiner` from its zero initialisation (its
  output = the classical mesh warp) on self-reenactment pairs whose warp the data module adds (``data.warp:
  true``); the same reconstruction losses (region-weighted L1, face-api perceptual / identity / expression),
  and with ``weights.cross`` > 0 a cross-identity term: another subject's source warped by each driver's relative
  motion (warped in the DataLoader's workers, ``data.cross: true``), its refined output's FaceExpressionNet
  embedding pulled to the driver's.

Every loss term is logged (``train/…``, ``val/…``) and weighted in config (:class:`ReenactWeights`). Manual
optimisation (generator and discriminator steps; Lightning's precision plugin handles bf16 / fp16).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import lightning.pytorch as pl
import torch
import torch.nn.functional as F

from mien.models.reenact import CROP
from mien.models.reenact.extra import MultiScaleDiscriminator, Student
from mien.models.reenact.nets import ReenactModel
from mien.models.registry import create_model
from mien.tasks.config import as_config, as_dict
from mien.tasks.reenact.config import OptimConfig, ReenactWeights
from mien.tasks.reenact.data import CROSS_KEYS, cross_permutation
from mien.tasks.reenact.losses import (
    FaceApiLoss,
    cross_contrastive,
    d_hinge,
    feature_matching,
    g_hinge,
    multiscale_l1,
    region_weights,
)

__all__ = ["ReenactTask", "STAGES"]

STAGES = ("base", "hr", "student", "warpguided")


def _jitter(x: torch.Tensor, strength: float, gen: torch.Generator | None = None) -> torch.Tensor:
    """Random per-image brightness, contrast and saturation (x (B, 3, H, W) in [0, 1])."""
    if strength <= 0:
        return x
    b = x.shape[0]

    def r():
        return 1 + strength * (2 * torch.rand(b, 1, 1, 1, device=x.device, generator=gen) - 1)

    x = x * r()
    m = x.mean((1, 2, 3), keepdim=True)
    x = (x - m) * r() + m
    g = x.mean(1, keepdim=True)
    return ((x - g) * r() + g).clamp(0, 1)


class ReenactTask(pl.LightningModule):
    """LightningModule of the reenactment stages.

    Args:
        model: registered name (``reenact-tiny|base|full``; student stage: ``reenact-student-tiny|base``;
            warpguided stage: ``reenact-warpguided-tiny``).
        model_overrides: keyword overrides of the registered config (e.g. ``{"z_dim": 16}``, the smaller
            expression latent of EMOPortraits).
        stage: ``base``, ``hr``, ``student`` or ``warpguided``.
        teacher: an exported model folder (``mien export reenact``) — the frozen base of ``hr`` and the teacher of
            ``student``.
        weights: loss weights (:class:`~mien.tasks.reenact.config.ReenactWeights`).
        optim: optimisers and schedule (:class:`~mien.tasks.reenact.config.OptimConfig`).
        disc_scales, disc_width: multi-scale patch discriminator (built when ``weights.gan`` or
            ``weights.feature_matching`` > 0).
        color_jitter: strength of the colour augmentation (same jitter on source and target; an independent one
            on the driver given to the motion encoder, so appearance cannot leak through the motion).
        faceapi_pretrained: load the shipped face-api weights for the perceptual / identity / expression terms
            (False: random init — only for plumbing tests).
        z_reg: L2 penalty on the expression latent (latent-space regularisation, EMOPortraits).
        perceptual_stages: FaceRecognitionNet stages used by the perceptual term (fewer = cheaper).
    """

    def __init__(self, model: str = "reenact-tiny", model_overrides: dict | None = None, stage: str = "base",
                 teacher: str | None = None, weights: ReenactWeights = ReenactWeights(),  # noqa: B008
                 optim: OptimConfig = OptimConfig(), disc_scales: int = 2, disc_width: int = 32,  # noqa: B008
                 color_jitter: float = 0.2, faceapi_pretrained: bool = True, z_reg: float = 0.0,
                 perceptual_stages: int = 4):
        super().__init__()
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
        self.stage, self.w, self.optim_cfg = stage, as_config(ReenactWeights, weights), as_config(OptimConfig, optim)
        self.color_jitter, self.z_reg = float(color_jitter), float(z_reg)
        self.save_hyperparameters({"model": model, "model_overrides": model_overrides, "stage": stage,
                                   "teacher": teacher, "weights": as_dict(self.w), "optim": as_dict(self.optim_cfg),
                                   "disc_scales": disc_scales, "disc_width": disc_width,
                                   "color_jitter": color_jitter, "faceapi_pretrained": faceapi_pretrained,
                                   "z_reg": z_reg, "perceptual_stages": perceptual_stages})
        self.automatic_optimization = False
        self.teacher = None
        if stage not in ("base", "warpguided"):
            if not teacher:
                raise ValueError(f"stage {stage!r} needs teacher=<exported reenact model folder>")
            from mien.models.reenact.io import load_reenact_model

            self.teacher = load_reenact_model(teacher).requires_grad_(False)
        if stage == "base":
            self.model = create_model(model, **(model_overrides or {}))
        elif stage == "warpguided":
            from mien.models.reenact.warpguided import WarpGuidedRefiner

            self.model = create_model(model, **(model_overrides or {}))
            if not isinstance(self.model, WarpGuidedRefiner):
                raise TypeError(f"stage 'warpguided' needs a reenact-warpguided model, got {model!r}")
        elif stage == "hr":
            if self.teacher.config.hr:
                raise ValueError(f"{teacher} already has a GHR enhancer")
            cfg = type(self.teacher.config).from_dict({**self.teacher.config.to_dict(), "hr": True,
                                                       **(model_overrides or {})})
            self.model = ReenactModel(cfg)
            self.model.load_state_dict(self.teacher.state_dict(), strict=False)
            self.model.requires_grad_(False)
            self.model.ghr.requires_grad_(True)
            self.teacher = None  # its weights live on, frozen, inside self.model
        else:
            self.model = create_model(model, **(model_overrides or {}))
            if not isinstance(self.model, Student):
                raise TypeError(f"stage 'student' needs a reenact-student model, got {model!r}")
            if self.model.size != self.teacher.size:
                raise ValueError(f"student size {self.model.size} != teacher size {self.teacher.size}")
            n, s = self.model.config.num_avatars, self.model.size
            self.register_buffer("avatar_src", torch.zeros(n, 3, s, s))
            self.register_buffer("avatar_pose", torch.zeros(n, 6))
            self.register_buffer("avatar_subject", torch.full((n,), -1, dtype=torch.long))
        w = self.w
        need_fa = stage != "student" and bool(w.perceptual or w.identity or w.expression
                                               or (stage == "warpguided" and w.cross))
        self.faceapi = FaceApiLoss(faceapi_pretrained, perceptual_stages) if need_fa else None
        self.disc = (MultiScaleDiscriminator(disc_scales, disc_width)
                     if stage != "student" and (w.gan or w.feature_matching) else None)

    # ---- data ------------------------------------------------------------------------------------------------
    def on_fit_start(self) -> None:
        """Refuse shards cut differently from the model's crop contract (and, for ``warpguided``, data without
        the pair warp)."""
        dm = getattr(self.trainer, "datamodule", None)
        want = getattr(dm, "crop_contract", None)
        if want is not None and want != CROP:
            raise ValueError(f"the data's crops are {want!r} but reenactment models use {CROP!r}")
        if self.stage == "warpguided" and dm is not None and not getattr(dm.hparams, "warp", False):
            raise ValueError("stage 'warpguided' needs the pair warp from the data: set data.warp: true")
        if self.stage == "warpguided" and self.w.cross and dm is not None and not getattr(dm.hparams, "cross", False):
            raise ValueError("stage 'warpguided' with weights.cross > 0 needs the cross-identity warps from the data: "
                             "set data.cross: true")

    def _images(self, batch, size: int) -> dict:
        def img(x):
            x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
            if x.shape[-1] != size:
                x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
            return x.clamp(0, 1)

        b = {"src": img(batch["src"]), "drv": img(batch["drv"]), "src_pose": batch["src_pose"].float(),
             "drv_pose": batch["drv_pose"].float(), "lm": batch["drv_landmarks"].float(),
             "crop": batch["src"].shape[-1], "subject": batch["subject"]}
        if "warped" in batch:
            if batch["src"].shape[-1] != size:
                raise ValueError(f"warpguided: shard crops are {batch['src'].shape[-1]} px, the model's {size} px "
                                 "(prepare the shards with --crop-size equal to the model size)")
            b.update(warped=img(batch["warped"]), flow=batch["flow"].float(), points=batch["points"].float())
        return b

    # ---- losses ----------------------------------------------------------------------------------------------
    def _recon_losses(self, out, target, b, logs) -> torch.Tensor:
        w = self.w
        wmap = region_weights(b["lm"], b["crop"], out.shape[-1], w.eye_region, w.mouth_region)
        logs["l1"] = multiscale_l1(out, target, wmap)
        total = w.l1 * logs["l1"]
        if self.faceapi is not None:
            need_id = bool(w.identity)
            fo, do = self.faceapi.recognition(out, need_id)
            with torch.no_grad():
                ft, dt = self.faceapi.recognition(target, need_id)
            logs["perceptual"] = self.faceapi.perceptual(fo, ft)
            total = total + w.perceptual * logs["perceptual"]
            if need_id:
                logs["identity"] = self.faceapi.identity(do, dt)
                total = total + w.identity * logs["identity"]
            if w.expression:
                with torch.no_grad():
                    et = self.faceapi.expression(target)
                logs["expression"] = (self.faceapi.expression(out) - et).abs().mean()
                total = total + w.expression * logs["expression"]
        if self.disc is not None:
            fake, real = self.disc(out), self.disc(target)
            logs["gan"], logs["feature_matching"] = g_hinge(fake), feature_matching(real, fake)
            total = total + w.gan * logs["gan"] + w.feature_matching * logs["feature_matching"]
        return total

    def _base_step(self, b, logs) -> tuple[torch.Tensor, torch.Tensor]:
        m, w = self.model, self.w
        src, drv = b["src"], b["drv"]
        if self.training and self.color_jitter:
            g = torch.Generator(device=src.device).manual_seed(int(torch.randint(0, 2**31, (1,))))
            src_j = _jitter(src, self.color_jitter, g)
            drv = _jitter(drv, self.color_jitter, g.manual_seed(g.initial_seed()))  # same jitter: the target
            drv_in = _jitter(b["drv"], self.color_jitter)  # independent: the driver seen by the motion encoder
            src = src_j
        else:
            drv_in = drv
        app = m.encode_appearance(src)
        m_s, m_d = m.encode_motion(src, b["src_pose"]), m.encode_motion(drv_in, b["drv_pose"])
        out = m.decode(app, m_s, m_d)
        total = self._recon_losses(out, drv, b, logs)
        if self.z_reg:
            logs["z_reg"] = m_d.z.square().mean()
            total = total + self.z_reg * logs["z_reg"]
        perm, valid = cross_permutation(b["subject"])
        if w.cross and valid.any():
            # source of another subject (row perm[i]) driven by driver i
            app_x = type(app)(app.volume[perm], app.descriptor[perm])
            cross = m.decode(app_x, m_s.index(perm), m_d)
            z_self = m.encode_motion(out, b["drv_pose"]).z
            z_cross = m.encode_motion(cross, b["drv_pose"]).z
            v = valid
            logs["cross"] = cross_contrastive([z_self[v], z_cross[v]], m_d.z[v], m_d.z[perm][v])
            total = total + w.cross * logs["cross"]
            if self.faceapi is not None and w.identity:
                _, dx = self.faceapi.recognition(cross[v])
                with torch.no_grad():
                    _, ds = self.faceapi.recognition(src[perm][v])
                logs["cross_identity"] = self.faceapi.identity(dx, ds)
                total = total + w.identity * logs["cross_identity"]
            b["cross"] = cross.detach()
        return total, out

    def _cross_expression(self, batch, b, logs) -> torch.Tensor:
        """warpguided stage: the cross-identity term — another subject's source animated by each driver's
        relative motion (:func:`~mien.tasks.reenact.data.cross_warp`, as in cross-reenactment at evaluation), made
        by the loader (:func:`~mien.tasks.reenact.data.collate_pairs`, ``data.cross: true``);
        no ground truth exists, so only the L1 between the FaceExpressionNet embeddings of the output and of the
        driver is minimised (the expression of the driver, not its identity: the refiner never sees the driver's
        pixels). No colour jitter on these rows. ``cross_expression_warp``, the same distance of the warp itself
        (baseline (b) on these pairs), is a metric only: computed on the steps whose metrics are written."""
        if CROSS_KEYS[0] not in batch:
            raise ValueError("stage 'warpguided' with weights.cross > 0: the batch has no cross-identity warps "
                             "(collate with mien.tasks.reenact.data.collate_pairs: data.cross: true)")
        rows, srcs, warped, flow, points = (batch[k] for k in CROSS_KEYS)
        if not len(rows):
            return b["drv"].new_zeros(())
        warped, flow, points = warped.float(), flow.float(), points.float()
        out = self.model(warped, b["src"][srcs], flow, points)
        with torch.no_grad():
            target = self.faceapi.expression(b["drv"][rows])
            if self._logged_step():
                logs["cross_expression_warp"] = (self.faceapi.expression(warped) - target).abs().mean()
        logs["cross_expression"] = (self.faceapi.expression(out) - target).abs().mean()
        return logs["cross_expression"]

    def _logged_step(self) -> bool:
        """Whether this step's metrics are written: every validation step (epoch means) and every call outside a
        Trainer; in training the steps Lightning logs (every ``log_every_n_steps``-th, as its logger connector
        decides for the ``on_step`` values of ``training_step``)."""
        if not self.training or self._trainer is None:
            return True
        t = self.trainer
        if t.fast_dev_run:
            return True
        connector = getattr(t, "_logger_connector", None)  # Lightning's own decision, when it still exposes it
        if connector is not None and hasattr(connector, "should_update_logs"):
            return bool(connector.should_update_logs)
        n = t.log_every_n_steps
        return bool(n) and (t.global_step + 1) % n == 0

    def _warpguided_step(self, b, logs, batch) -> tuple[torch.Tensor, torch.Tensor]:
        src, warped, drv = b["src"], b["warped"], b["drv"]
        if self.training and self.color_jitter:  # one jitter per pair on source, its warp and the target
            seed = int(torch.randint(0, 2**31, (1,)))
            src, warped, drv = (_jitter(x, self.color_jitter, torch.Generator(device=x.device).manual_seed(seed))
                                for x in (src, warped, drv))
        out = self.model(warped, src, b["flow"], b["points"])
        total = self._recon_losses(out, drv, b, logs)
        with torch.no_grad():
            logs["warp_l1"] = (warped - drv).abs().mean()  # baseline (b) on the same pairs
        if self.w.cross:  # FaceExpressionNet is built whenever the warpguided stage has a cross weight
            total = total + self.w.cross * self._cross_expression(batch, b, logs)
        return total, out

    def _hr_step(self, b_lo, b_hi, logs):
        m = self.model
        out = m(b_hi["src"], b_hi["drv"], b_hi["src_pose"], b_hi["drv_pose"])
        with torch.no_grad():
            base = m.decode_base(m.eapp(b_lo["src"]), m.emtn(b_lo["src"], b_lo["src_pose"]),
                                 m.emtn(b_lo["drv"], b_lo["drv_pose"]))
        logs["cycle"] = (F.avg_pool2d(out, 2) - base).abs().mean()  # MegaPortraits' unsupervised HR term
        total = self._recon_losses(out, b_hi["drv"], b_hi, logs) + self.w.cycle * logs["cycle"]
        return total, out

    def _student_step(self, b, logs):
        n = self.model.config.num_avatars
        self._collect_avatars(b)
        have = int((self.avatar_subject >= 0).sum())
        idx = torch.randint(0, max(have, 1), (b["drv"].shape[0],), device=b["drv"].device)
        if not self.training:
            idx = torch.arange(b["drv"].shape[0], device=idx.device) % max(have, 1)
        with torch.no_grad():
            t = self.teacher
            src, sp = self.avatar_src[idx], self.avatar_pose[idx]
            target = t.decode(t.encode_appearance(src), t.encode_motion(src, sp), t.encode_motion(b["drv"], b["drv_pose"]))
        out = self.model(b["drv"], idx.clamp(max=n - 1))
        wmap = region_weights(b["lm"], b["crop"], out.shape[-1], self.w.eye_region, self.w.mouth_region)
        logs["distill"] = multiscale_l1(out, target, wmap)
        return self.w.distill * logs["distill"], out, target

    def _collect_avatars(self, b) -> None:
        """Fill the avatar table with the first sources of subjects not seen yet (training batches only)."""
        if not self.training:
            return
        for i in range(b["src"].shape[0]):
            free = (self.avatar_subject < 0).nonzero()
            if not len(free):
                return
            s = int(b["subject"][i])
            if (self.avatar_subject == s).any():
                continue
            k = int(free[0])
            self.avatar_src[k], self.avatar_pose[k], self.avatar_subject[k] = b["src"][i], b["src_pose"][i], s

    def _step(self, batch, logs):
        if self.stage == "base":
            b = self._images(batch, self.model.size)
            total, out = self._base_step(b, logs)
            return total, b, out, None
        if self.stage == "warpguided":
            b = self._images(batch, self.model.size)
            total, out = self._warpguided_step(b, logs, batch)
            return total, b, out, None
        if self.stage == "hr":
            b_hi = self._images(batch, self.model.size)
            b_lo = self._images(batch, self.model.config.size)
            total, out = self._hr_step(b_lo, b_hi, logs)
            return total, b_hi, out, None
        b = self._images(batch, self.model.size)
        total, out, target = self._student_step(b, logs)
        return total, b, out, target

    # ---- steps -----------------------------------------------------------------------------------------------
    def training_step(self, batch, batch_idx):
        opts = self.optimizers()
        opts = opts if isinstance(opts, list) else [opts]
        scheds = self.lr_schedulers()
        scheds = scheds if isinstance(scheds, list) else [scheds] if scheds is not None else []
        logs: dict = {}
        total, b, out, _ = self._step(batch, logs)
        opt_g = opts[0]
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(total)
        if self.optim_cfg.grad_clip:
            self.clip_gradients(opt_g, gradient_clip_val=self.optim_cfg.grad_clip, gradient_clip_algorithm="norm")
        opt_g.step()
        if self.disc is not None:
            opt_d = opts[1]
            opt_d.zero_grad(set_to_none=True)
            logs["disc"] = d_hinge(self.disc(b["drv"]), self.disc(out.detach()))
            self.manual_backward(logs["disc"])
            opt_d.step()
        for s in scheds:
            s.step()
        logs["loss"] = total
        bs = b["drv"].shape[0]
        self.log_dict({f"train/{k}": v.detach() for k, v in logs.items()}, on_step=True, on_epoch=False,
                      batch_size=bs)
        self.log("loss", total.detach(), prog_bar=True, on_step=True, batch_size=bs)
        self.log("train/lr", opt_g.param_groups[0]["lr"], on_step=True, batch_size=bs)
        return total.detach()

    def validation_step(self, batch, batch_idx, dataloader_idx: int = 0):
        logs: dict = {}
        total, b, out, target = self._step(batch, logs)
        logs["loss"] = total
        logs["l1_plain"] = (out - (target if target is not None else b["drv"])).abs().mean()
        self.log_dict({f"val/{k}": v.detach() for k, v in logs.items()}, on_step=False, on_epoch=True,
                      batch_size=b["drv"].shape[0], add_dataloader_idx=False)
        if batch_idx == 0:
            self._log_grid(b, out, target)
        return total

    def _log_grid(self, b, out, target) -> None:
        """TensorBoard image: rows of source | driver | output (| cross-reenactment or teacher)."""
        exp = getattr(self.logger, "experiment", None)
        if exp is None or not hasattr(exp, "add_image"):
            return
        n = min(4, out.shape[0])
        cols = [b["src"][:n], b["drv"][:n], out[:n]]
        extra = target if target is not None else b.get("cross", b.get("warped"))
        if extra is not None:
            cols.append(extra[:n])
        s = out.shape[-1]
        cols = [F.interpolate(c.float(), size=(s, s), mode="bilinear", align_corners=False) for c in cols]
        rows = [torch.cat([c[i] for c in cols], dim=2) for i in range(n)]
        exp.add_image("val/source_driver_output", torch.cat(rows, dim=1).clamp(0, 1).cpu(), self.global_step)

    # ---- optimisation ----------------------------------------------------------------------------------------
    def _total_steps(self) -> int:
        if self.optim_cfg.total_steps is not None:
            return int(self.optim_cfg.total_steps)
        est = getattr(self.trainer, "estimated_stepping_batches", None)
        return int(est) if est is not None and math.isfinite(est) else 10**6

    def configure_optimizers(self):
        h = self.optim_cfg
        total = max(self._total_steps(), h.warmup_steps + 1)

        def lam(step, peak):
            if step < h.warmup_steps:
                return (step + 1) / h.warmup_steps
            p = min(1.0, (step - h.warmup_steps) / (total - h.warmup_steps))
            return (h.min_lr + (peak - h.min_lr) * 0.5 * (1 + math.cos(math.pi * p))) / peak

        params = [p for p in self.model.parameters() if p.requires_grad]
        opt_g = torch.optim.AdamW(params, lr=h.lr, betas=tuple(h.betas), weight_decay=h.weight_decay)
        opts, scheds = [opt_g], [torch.optim.lr_scheduler.LambdaLR(opt_g, lambda s: lam(s, h.lr))]
        if self.disc is not None:
            opt_d = torch.optim.AdamW(self.disc.parameters(), lr=h.d_lr, betas=tuple(h.betas),
                                      weight_decay=h.weight_decay)
            opts.append(opt_d)
            scheds.append(torch.optim.lr_scheduler.LambdaLR(opt_d, lambda s: lam(s, h.d_lr)))
        return opts, scheds

    # ---- export ----------------------------------------------------------------------------------------------
    def export(self, directory: str | os.PathLike, extra: dict | None = None) -> Path:
        """Write the trained model (base/hr: :class:`ReenactModel`; student: :class:`Student`; warpguided:
        :class:`~mien.models.reenact.warpguided.WarpGuidedRefiner`) as
        ``config.json`` + ``model.safetensors``."""
        from mien.models.reenact.io import save_reenact_model

        meta = {"stage": self.stage, "teacher": self.hparams.get("teacher"), **(extra or {})}
        return save_reenact_model(self.model, directory, meta)

