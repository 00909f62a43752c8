"""SMIRK / TEASER training (analysis by neural synthesis) with Lightning: :class:`Face3DTask`.

Per batch (manual optimisation, two Adam optimisers: encoders at ``lr · encoder_lr_scale``, generator at ``lr``
with betas (0.5, 0.999); cosine decay to ``min_lr_ratio``):

* path 1: encode the crop → :class:`~mien.models.face3d.Face3DParams`; soft-rasterised geometry render; neural
  reconstruction from [render, masked crop (+ hint pixels)] (+ tokens). Losses: landmark reprojection, photometric
  L1, face-api perceptual, face-api emotion consistency (generator weights frozen for this term), token cycle,
  coefficient regularisers;
* path 2 (expression-augmentation cycle): new expressions/jaws/eyelids (random / permuted / template / zero,
  :func:`~mien.tasks.face3d.losses.augment_expressions`), render and reconstruct with the detached tokens,
  re-encode, and penalise the difference to the augmented parameters, as a second optimiser step; with
  ``alternate`` the encoders are frozen in this path on even batches and the generator on odd ones (seed), the
  generator's gradient clipped to ``generator_clip`` when the cycle trains it.

Logged (``train/``, ``val/``): loss, loss_<term> for every weight, lr. Export: :meth:`Face3DTask.export`
(``mien export face3d``).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from torch.func import functional_call
from torch.nn import functional as F

from mien.models.face3d.learned import Face3DNet, save_face3d
from mien.models.registry import create_model
from mien.tasks.config import as_config, as_dict
from mien.tasks.face3d.config import CycleConfig, Face3DOptim, Face3DWeights
from mien.tasks.face3d.losses import (
    FaceApiFeatures,
    augment_expressions,
    coefficient_std,
    expression_templates,
    landmark_loss,
)
from mien.tasks.schedules import WarmupDecaySchedule, lambda_lr

__all__ = ["Face3DTask", "bn_statistics_frozen", "recalibrate_batchnorm"]


@contextmanager
def bn_statistics_frozen(module: torch.nn.Module):
    """Batch-norm layers of ``module`` in eval mode inside the block (running statistics used, not updated;
    gradients still flow). The encoders see generated images in the cycle and token-cycle terms: updating the
    statistics with them made the eval-mode encoder diverge from the training-mode one on real faces."""
    bns = [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.training]
    for m in bns:
        m.eval()
    try:
        yield module
    finally:
        for m in bns:
            m.train()


@torch.no_grad()
def recalibrate_batchnorm(module: torch.nn.Module, images) -> int:
    """Recompute the running statistics of every batch-norm layer of ``module`` as the plain average over
    ``images`` (an iterable of (B, 3, S, S) real crops), as :func:`torch.optim.swa_utils.update_bn` does; the
    module's mode and momenta are restored. Returns the number of images seen."""
    bns = [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = {m: m.momentum for m in bns}
    was = module.training
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    module.train()
    n = 0
    for x in images:
        module(x)
        n += len(x)
    for m in bns:
        m.momentum = momenta[m]
    module.train(was)
    return n


class Face3DTask(pl.LightningModule):
    """LightningModule training a registered ``face3d`` model (``smirk-tiny``, ``teaser-tiny``, ``smirk``, ``teaser``).

    Args:
        model: registered name (``mien.list_models("face3d")``). model_overrides: keyword overrides of its
            :class:`~mien.models.face3d.Face3DConfig` (e.g. ``{"face_model": "flame:/p/generic_model.pkl"}``).
        weights: :class:`~mien.tasks.face3d.config.Face3DWeights`. cycle: :class:`~.config.CycleConfig`.
        optim: :class:`~.config.Face3DOptim`. total_steps: cosine-decay length in batches (None: the trainer's
            ``max_steps`` / 2 — Lightning counts one step per optimiser, two per batch — or its estimate).
        seed: seed of the cycle path's augmentation generator.
    """

    def __init__(self, model: str = "smirk-tiny", model_overrides: dict | None = None,
                 weights: Face3DWeights = Face3DWeights(), cycle: CycleConfig = CycleConfig(),  # noqa: B008
                 optim: Face3DOptim = Face3DOptim(), total_steps: int | None = None, seed: int = 0):  # noqa: B008
        super().__init__()
        self.automatic_optimization = False
        self.w = as_config(Face3DWeights, weights)
        self.cycle_cfg = as_config(CycleConfig, cycle)
        self.optim_cfg = as_config(Face3DOptim, optim)
        self._total_steps = total_steps
        self.save_hyperparameters({"model": model, "model_overrides": model_overrides, "weights": as_dict(self.w),
                                   "cycle": as_dict(self.cycle_cfg), "optim": as_dict(self.optim_cfg),
                                   "total_steps": total_steps, "seed": seed})
        self.net: Face3DNet = create_model(model, **(model_overrides or {}))
        if not isinstance(self.net, Face3DNet):
            raise TypeError(f"{model!r} is not a face3d model")
        fm, enc = self.net.face_model, self.net.encoder
        self.register_buffer("expr_std", torch.as_tensor(coefficient_std(fm, "expression", enc.n_expression)),
                             persistent=False)
        self.register_buffer("shape_std", torch.as_tensor(coefficient_std(fm, "shape", enc.n_shape)), persistent=False)
        t = expression_templates(fm, enc.n_expression)
        self.register_buffer("templates", None if t is None else torch.as_tensor(t), persistent=False)
        self.features = FaceApiFeatures(self.w.perceptual > 0, self.w.emotion > 0) \
            if self.w.perceptual > 0 or self.w.emotion > 0 else None
        self._gen = torch.Generator().manual_seed(seed)
        self._batches = -1  # training batches seen in this run (the cycle path alternates on its parity)
        o = self.optim_cfg
        for sub, on in ((enc.pose, o.train_pose), (enc.shape, o.train_shape), (enc.expression, o.train_expression)):
            if sub is not None and not on:
                sub.requires_grad_(False)

    # ------------------------------------------------------------------------------------------ data
    def on_fit_start(self) -> None:
        """Refuse data cut differently from the model's crop contract."""
        dm = getattr(self.trainer, "datamodule", None)
        want = getattr(dm, "crop_contract", None)
        if want is not None and want != self.net.cfg.crop:
            raise ValueError(f"the data's crops are {want!r} but the model's crop contract is {self.net.cfg.crop!r}: "
                             "set model_overrides.crop (or the data's crop margin)")

    def unpack(self, batch, sample: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """(crops (N, 3, S, S) float [0, 1] at the model's size, landmarks (N, 478, 3) crop-normalised [−1, 1]).

        Shard batches (``video`` (B, T, 3, S0, S0) uint8, ``landmarks`` (B, T, 478, 3) px): ``frames_per_clip``
        random frames of each clip (all when ``sample`` is False: validation). Image batches: as they are."""
        if "video" in batch:
            v, lm = batch["video"], batch["landmarks"]
            b, t = v.shape[:2]
            k = min(self.optim_cfg.frames_per_clip, t) if sample else t
            if k < t:
                idx = torch.stack([torch.randperm(t, generator=self._gen)[:k] for _ in range(b)]).to(v.device)
                ar = torch.arange(b, device=v.device)[:, None]
                v, lm = v[ar, idx], lm[ar, idx]
            img, lm = v.flatten(0, 1), lm.flatten(0, 1)
        else:
            img, lm = batch["image"], batch["landmarks"]
        if img.dtype == torch.uint8:
            img = img.float() / 255.0
        s0, s = img.shape[-1], self.net.cfg.size
        norm = (lm.float() + 0.5) * (2.0 / s0) - 1.0
        if s0 != s:
            img = F.interpolate(img, size=(s, s), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
        return img, norm

    # ------------------------------------------------------------------------------------------ losses
    def _regularisers(self, p) -> dict[str, torch.Tensor]:
        zero = p.expression.new_zeros(())
        return {"expression_reg": ((p.expression / self.expr_std) ** 2).mean(),
                "jaw_reg": (p.jaw ** 2).mean(),
                "shape_reg": ((p.shape / self.shape_std) ** 2).mean() if p.shape.numel() else zero}

    def _emotion(self, recon_input: torch.Tensor, tokens, img: torch.Tensor) -> torch.Tensor:
        """Emotion consistency with the generator's weights frozen (gradients reach the encoders only)."""
        gen = self.net.renderer.generator
        frozen = {k: v.detach() for k, v in gen.named_parameters()}
        rec = functional_call(gen, frozen, (recon_input, tokens))
        with torch.no_grad():
            target = self.features.emotion(img)
        return F.mse_loss(self.features.emotion(rec), target)

    def _fit_distill(self, p, lm: torch.Tensor) -> torch.Tensor:
        """Distillation to the per-frame landmark fit (no gradient through the fit): MSE of expression in
        unit-variance units, plus 10 × MSE of jaw (rad) and eyelids. The fit is similarity-invariant, so the
        crop-normalised landmarks serve as they are."""
        from mien.models.face3d.fit import fit_landmarks

        f = fit_landmarks(lm.detach().cpu().double().numpy(), self.net.face_model,
                          n_expression=self.net.encoder.n_expression)
        e = f["expression"].shape[1]
        tgt = {k: torch.as_tensor(f[k], dtype=p.expression.dtype, device=p.expression.device)
               for k in ("expression", "jaw", "eyelids")}
        std = self.expr_std[:e]
        return (F.mse_loss(p.expression[:, :e] / std, tgt["expression"] / std)
                + 10.0 * F.mse_loss(p.jaw, tgt["jaw"]) + 10.0 * F.mse_loss(p.eyelids, tgt["eyelids"]))

    def path1(self, img: torch.Tensor, lm: torch.Tensor) -> tuple[dict[str, torch.Tensor], object, torch.Tensor]:
        """Losses of the reconstruction path (unweighted), the params and the reconstruction."""
        net, w = self.net, self.w
        p = net.encoder(img)
        geo = net.renderer.geometry(p)
        from mien.models.face3d.generators import masked_image

        ren = net.renderer
        masked = masked_image(img, geo["mask"], ren.hints(len(img), img.device), ren.cfg.mask_dilate)
        x = torch.cat([geo["shaded"], masked], 1)
        recon = ren.generator(x, p.tokens)
        zero = img.new_zeros(())
        out = {"landmark": landmark_loss(net.face_model, p, lm), "photometric": F.l1_loss(recon, img)}
        out["perceptual"] = self.features.perceptual_loss(recon, img) if w.perceptual > 0 else zero
        out["emotion"] = self._emotion(x, p.tokens, img) if w.emotion > 0 else zero
        if p.tokens is not None and w.token_cycle > 0:
            with bn_statistics_frozen(net.encoder.tokens):
                out["token_cycle"] = F.mse_loss(net.encoder.tokens(recon), p.tokens.detach()) * p.tokens.shape[1]
        else:
            out["token_cycle"] = zero
        out["fit_distill"] = self._fit_distill(p, lm) if w.fit_distill > 0 else zero
        out.update(self._regularisers(p))
        return out, p, recon

    def path2(self, img: torch.Tensor, p, train_generator: bool) -> torch.Tensor:
        """The expression-augmentation cycle loss (unweighted sum of its weighted parts)."""
        net, w = self.net, self.w
        q = augment_expressions(p, self.cycle_cfg, self.expr_std, self.templates, self._gen)
        recon = net.renderer.render(img, q)
        with bn_statistics_frozen(net.encoder):  # generated images must not move the BN statistics of real ones
            r = net.encoder(recon)
        loss = F.mse_loss(r.expression / self.expr_std, q.expression / self.expr_std)
        loss = loss + w.cycle_jaw * F.mse_loss(r.jaw, q.jaw) + w.cycle_eyelids * F.mse_loss(r.eyelids, q.eyelids)
        if q.tokens is not None:
            loss = loss + w.cycle_token * F.mse_loss(r.tokens[:, 0], q.tokens[:, 0])
        if train_generator and r.shape.numel():
            loss = loss + w.cycle_shape * F.mse_loss(r.shape / self.shape_std, q.shape / self.shape_std)
        return loss

    def weighted(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        return sum(getattr(self.w, k) * v for k, v in terms.items())

    # ------------------------------------------------------------------------------------------ steps
    def training_step(self, batch, batch_idx):
        """Path 1: one step of both optimisers. Path 2 (cycle): a second step of the side it trains (both without
        ``alternate``); that step goes to the raw optimisers, so Lightning's ``global_step`` counts two per batch."""
        opt_e, opt_g = self.optimizers()
        self._batches += 1
        img, lm = self.unpack(batch)
        terms, p, _ = self.path1(img, lm)
        loss = self.weighted(terms)
        opt_e.zero_grad(set_to_none=True)
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        opt_e.step()
        opt_g.step()
        if self.w.cycle > 0:
            o = self.optim_cfg
            train_encoder = not (o.alternate and self._batches % 2 == 0)
            train_generator = not (o.alternate and train_encoder)
            enc, gen = self.net.encoder, self.net.renderer.generator
            states = {q: q.requires_grad for q in enc.parameters()}
            if not train_encoder:
                enc.requires_grad_(False)
            gen.requires_grad_(train_generator)
            try:
                cycle = self.path2(img, p, train_generator)
            finally:
                for q, st in states.items():
                    q.requires_grad_(st)
                gen.requires_grad_(True)
            opt_e.zero_grad(set_to_none=True)
            opt_g.zero_grad(set_to_none=True)
            self.manual_backward(self.w.cycle * cycle)
            if train_generator:
                if o.generator_clip > 0:
                    torch.nn.utils.clip_grad_norm_(gen.parameters(), o.generator_clip)
                opt_g.optimizer.step()
            if train_encoder:
                opt_e.optimizer.step()
            terms["cycle"] = cycle.detach()
            loss = loss.detach() + self.w.cycle * terms["cycle"]
        else:
            terms["cycle"] = img.new_zeros(())
        for s in self.lr_schedulers():
            s.step()
        bs = len(img)
        self.log("train/loss", loss.detach(), prog_bar=True, batch_size=bs)
        for k, v in terms.items():
            self.log(f"train/loss_{k}", v.detach(), batch_size=bs)
        self.log("train/lr", opt_g.param_groups[0]["lr"], batch_size=bs)
        return loss.detach()

    def validation_step(self, batch, batch_idx, dataloader_idx: int = 0):
        img, lm = self.unpack(batch, sample=False)
        terms, _, _ = self.path1(img, lm)
        loss = self.weighted(terms)
        bs = len(img)
        self.log("val/loss", loss, batch_size=bs, add_dataloader_idx=False)
        for k, v in terms.items():
            self.log(f"val/loss_{k}", v, batch_size=bs, add_dataloader_idx=False)

    # ------------------------------------------------------------------------------------------ optimisers
    def total_steps(self) -> int:
        if self._total_steps is not None:
            return int(self._total_steps)
        if self._trainer is None:
            return 1000
        if self.trainer.max_steps and self.trainer.max_steps > 0:
            return max(self.trainer.max_steps // 2, 1)
        est = getattr(self.trainer, "estimated_stepping_batches", None)
        return int(est) if est is not None and np.isfinite(est) else 1000

    def configure_optimizers(self):
        o = self.optim_cfg
        enc = [q for q in self.net.encoder.parameters() if q.requires_grad]
        opt_e = torch.optim.Adam(enc, lr=o.lr * o.encoder_lr_scale)
        opt_g = torch.optim.Adam(self.net.renderer.generator.parameters(), lr=o.lr, betas=tuple(o.generator_betas))
        sched = WarmupDecaySchedule(1.0, 1.0, o.min_lr_ratio, 0, max(self.total_steps(), 1), decay="cosine")
        return [opt_e, opt_g], [lambda_lr(opt_e, sched)["scheduler"], lambda_lr(opt_g, sched)["scheduler"]]

    # ------------------------------------------------------------------------------------------ export
    def export(self, directory: str | os.PathLike, extra: dict | None = None) -> Path:
        """``config.json`` + ``model.safetensors`` (:func:`mien.models.face3d.save_face3d`), with the training
        hyper-parameters recorded."""
        return save_face3d(self.net, directory, {"training": dict(self.hparams), **(extra or {})})
