"""Training of image AU models (FaceFlow done right): :class:`AUImageTask`.

Model (:mod:`mien.models.au.backbone`): any timm backbone (one or several pooled stages) or mien's offline face-api
feature extractor, an occurrence head (B, A) and an optional intensity head (regression in [0, 1] or ordinal).

Semi-supervised (``ssl``): FixMatch (Sohn et al. 2020) on unlabelled images; DeFixMatch (Schmutz et al. 2022,
"Don't fear the unlabelled: safe semi-supervised learning via debiasing"):
L = ½(L_sup(weak) + L_sup(strong)) + λ_u (L_u(unlabelled) − L_u(labelled)), the second term being the same
pseudo-label loss on labelled images (the debiasing term). MIRO (:class:`~mien.tasks.au.losses.MIRORegularizer`)
against a frozen copy of the initial backbone. Losses and augmentation: :mod:`mien.tasks.au.losses`,
:mod:`mien.tasks.au.augment`.

Batches: ``{"image": (B, 3, S, S) float RGB [0, 1], "occ": (B, A), "occ_mask": (B, A), "int": (B, A) [0, 1],
"int_mask": (B, A)}`` (see :mod:`mien.data.au`), or ``{"labeled": that, "unlabeled": {"image": (B_u, 3, S, S)}}``.
Export: :func:`mien.export.au.export_au_onnx` (``mien export au``).
"""

from __future__ import annotations

import copy

import torch

from mien.models.au.backbone import AUNet, build_backbone
from mien.tasks.au.augment import flip_labels, strong_augment, weak_augment
from mien.tasks.au.config import (
    BackboneConfig,
    ImageInput,
    IntensityConfig,
    LossConfig,
    MIROConfig,
    OptimConfig,
    SSLConfig,
)
from mien.tasks.au.losses import (
    MIRORegularizer,
    bce_loss,
    fixmatch_unlabeled_loss,
    masked_mean,
    ordinal_targets,
)
from mien.tasks.au.task import AUTaskBase
from mien.tasks.config import as_config, as_dict

__all__ = ["AUImageTask"]


class AUImageTask(AUTaskBase):
    """AU occurrence (+ intensity) from face images, with optional FixMatch/DeFixMatch and MIRO.

    Args:
        au_names, loss, optim, val_merge_sides: see :class:`~mien.tasks.au.task.AUTaskBase`.
        image: the input contract (:class:`~mien.tasks.au.config.ImageInput`; linked from ``data.image``).
        backbone: :class:`~mien.tasks.au.config.BackboneConfig`.
        intensity: :class:`~mien.tasks.au.config.IntensityConfig`.
        dropout: before the heads.
        ssl: :class:`~mien.tasks.au.config.SSLConfig`.
        miro: :class:`~mien.tasks.au.config.MIROConfig`.
        augment: weak augmentation of labelled images during training.
    """

    def __init__(self, au_names: list[str], image: ImageInput = ImageInput(), backbone: BackboneConfig = BackboneConfig(),  # noqa: B008
                 intensity: IntensityConfig = IntensityConfig(), dropout: float = 0.0, loss: LossConfig = LossConfig(),  # noqa: B008
                 ssl: SSLConfig = SSLConfig(), miro: MIROConfig = MIROConfig(), optim: OptimConfig = OptimConfig(),  # noqa: B008
                 augment: bool = True, val_merge_sides: bool = False):
        super().__init__(au_names, loss, optim, val_merge_sides)
        self.image = as_config(ImageInput, image)
        self.backbone_cfg = as_config(BackboneConfig, backbone)
        self.intensity = as_config(IntensityConfig, intensity)
        self.ssl = as_config(SSLConfig, ssl)
        self.miro_cfg = as_config(MIROConfig, miro)
        self.augment, self.dropout = bool(augment), float(dropout)
        self._save_config(image=as_dict(self.image), backbone=as_dict(self.backbone_cfg),
                          intensity=as_dict(self.intensity), dropout=self.dropout, ssl=as_dict(self.ssl),
                          miro=as_dict(self.miro_cfg), augment=self.augment)
        b = self.backbone_cfg
        bb = build_backbone(b.name, pretrained=b.pretrained, features_only=b.features_only, out_indices=b.out_indices)
        self.net = AUNet(bb, len(self.au_names), intensity=self.intensity.kind, ordinal_levels=self.intensity.levels,
                         dropout=dropout)
        self.miro = self.miro_ref = None
        if self.miro_cfg.weight > 0:
            self.miro_ref = copy.deepcopy(bb).eval().requires_grad_(False)
            self.miro = MIRORegularizer(bb.level_dims)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.miro_ref is not None:
            self.miro_ref.eval()
        return self

    def forward(self, x: torch.Tensor) -> dict:
        """(B, 3, S, S) float RGB [0, 1] -> :class:`~mien.models.au.backbone.AUNet` outputs (``occ`` logits
        (B, A), ``int``, ``levels``)."""
        return self.net(x)

    def intensity_01(self, out: dict) -> torch.Tensor | None:
        return self.net.intensity_01(out)

    def supervised_loss(self, out: dict, batch: dict) -> tuple[torch.Tensor, dict]:
        """Occurrence loss + ``intensity.weight`` × the intensity loss (masked L1 or ordinal BCE)."""
        _, parts = super().supervised_loss(out, batch)
        it = self.intensity
        if it.kind == "regression":
            parts["int"] = masked_mean((out["int"] - batch["int"]).abs(), batch["int_mask"])
        elif it.kind == "ordinal":
            tgt = ordinal_targets(batch["int"], it.levels)
            m = batch["int_mask"][..., None].expand_as(tgt)
            parts["int"] = bce_loss(out["int"], tgt, m)
        total = parts["occ"] + it.weight * parts.get("int", 0.0)
        return total, parts

    def training_step(self, batch, batch_idx):
        lab, ulb = (batch["labeled"], batch.get("unlabeled")) if "labeled" in batch else (batch, None)
        if "image" not in lab:
            raise ValueError("AUImageTask needs 'image' batches: use AUDataModule(input='image')")
        x = lab["image"]
        if self.augment:
            x, flips = weak_augment(x, return_flips=True)
            lab = flip_labels(lab, flips, self._flip_perm)
        out = self.net(x)
        loss, parts = self.supervised_loss(out, lab)
        logs = {f"train/loss_{k}": v for k, v in parts.items()}
        s = self.ssl
        if s.kind != "none":
            l_u = out["occ"].new_zeros(())
            if ulb is not None and len(ulb["image"]):
                uw = weak_augment(ulb["image"])
                us = strong_augment(uw)
                z = self.net(torch.cat([uw, us]))["occ"]
                l_u = fixmatch_unlabeled_loss(z[len(uw):], z[:len(uw)], s.threshold)
            if s.kind == "defixmatch":
                out_s = self.net(strong_augment(x))
                loss_s, _ = self.supervised_loss(out_s, lab)
                loss = 0.5 * (loss + loss_s)
                l_anti = fixmatch_unlabeled_loss(out_s["occ"], out["occ"], s.threshold)
                logs["train/loss_anti"] = l_anti
                l_u = l_u - l_anti
            logs["train/loss_unlabeled"] = l_u
            if torch.isfinite(l_u):
                loss = loss + s.weight * l_u
        if self.miro is not None:
            with torch.no_grad():
                ref = self.miro_ref.levels(x)
            reg = self.miro(out["levels"], ref)
            logs["train/miro"] = reg
            loss = loss + self.miro_cfg.weight * reg
        logs["train/loss"] = loss
        self.log_dict(logs, prog_bar=False, batch_size=len(x))
        return loss

    def param_groups(self) -> list[dict]:
        lr = self.optim_cfg.lr
        head = [p for n, p in self.net.named_parameters() if not n.startswith("backbone.")]
        groups = [{"params": list(self.net.backbone.parameters()), "lr": lr * self.backbone_cfg.lr_mult},
                  {"params": head, "lr": lr}]
        if self.miro is not None:
            groups.append({"params": list(self.miro.parameters()), "lr": lr * self.miro_cfg.lr_mult,
                           "weight_decay": 0.0})
        return groups

    def contract(self) -> dict:
        return {
            "au_names": list(self.au_names),
            "image_size": int(self.image.size),
            "value_range": "0-1",
            "color": "RGB",
            "grayscale": bool(self.image.grayscale),
            "crop": {"kind": "landmark-box-square", "scale": float(self.image.crop_scale),
                     "landmark_scheme": "mediapipe478",
                     "function": "mien.models.au.features.face_crops(images, landmark_bboxes(lm), scale, image_size)"},
            "intensity": self.intensity.kind,
            "intensity_unit": "FACS/5 in [0, 1]",
            "threshold": 0.5,
            "backbone": self.backbone_cfg.name,
        }
