"""What the two AU tasks share (:class:`AUTaskBase`): occurrence losses set up from the training split's class
counts, validation metrics, AdamW with warm-up + cosine decay; and the feature-vector task
:class:`AUFeaturesTask` (the image task is :class:`mien.tasks.au.image.AUImageTask`).

Batches (:class:`mien.tasks.au.AUDataModule`): ``{"image": (B, 3, S, S) float RGB [0, 1]`` or ``"features": (B, D)
float32, "occ": (B, A) 0/1, "occ_mask": (B, A), "int": (B, A) [0, 1], "int_mask": (B, A)}``.

Validation logs (per AU and macro) with :mod:`mien.metrics.au`: ``val/f1`` (threshold 0.5), ``val/f1_eer``,
``val/ap``, ``val/auc`` and, with an intensity head, ``val/icc``, ``val/pcc``, ``val/mae`` in FACS units (0–5).
"""

from __future__ import annotations

from collections.abc import Sequence

import lightning.pytorch as pl
import numpy as np
import torch

from mien.data.labels.facs import flip_permutation, merge_sided, sided_groups
from mien.tasks.au.config import LossConfig, OptimConfig
from mien.tasks.au.losses import DistributionBalancedLoss, balanced_pos_weight, bce_loss, sigmoid_focal_loss
from mien.tasks.config import as_config, as_dict
from mien.tasks.schedules import WarmupDecaySchedule, lambda_lr

__all__ = ["AUFeaturesTask", "AUTaskBase"]


class AUTaskBase(pl.LightningModule):
    """Base of the AU tasks: A occurrence outputs (logits ``out["occ"]`` (B, A)) trained with a masked loss.

    Args:
        au_names: A output names (linked from the data config: ``data.labels.au_names`` / ``merge_sides``).
        loss: :class:`~mien.tasks.au.config.LossConfig`.
        optim: :class:`~mien.tasks.au.config.OptimConfig`.
        val_merge_sides: also log metrics with left/right columns merged (max), under ``merged/``.

    Subclasses build ``self.net``, implement :meth:`forward` (→ dict with ``"occ"``), :meth:`param_groups`
    and :meth:`contract`, and may override :meth:`supervised_loss` / :meth:`intensity_01`.

    Raises:
        ValueError: no AU names, or an invalid loss config.
    """

    def __init__(self, au_names: list[str], loss: LossConfig = LossConfig(),  # noqa: B008
                 optim: OptimConfig = OptimConfig(), val_merge_sides: bool = False):  # noqa: B008
        super().__init__()
        if not au_names:
            raise ValueError(f"{type(self).__name__} needs au_names")
        self.au_names = list(au_names)
        self.loss_cfg = as_config(LossConfig, loss)
        self.optim_cfg = as_config(OptimConfig, optim)
        self.val_merge_sides = bool(val_merge_sides)
        self.db_loss: DistributionBalancedLoss | None = None
        self.pos_weight: torch.Tensor | None = None
        self._flip_perm = flip_permutation(self.au_names)
        self._val: list[dict] = []
        self.last_metrics: dict[str, float] = {}

    def _save_config(self, **more) -> None:
        """Store the hyper-parameters as plain values (dataclasses as dicts) for checkpoints."""
        self.save_hyperparameters({"au_names": self.au_names, "loss": as_dict(self.loss_cfg),
                                   "optim": as_dict(self.optim_cfg), "val_merge_sides": self.val_merge_sides,
                                   **more})

    # -- setup
    def set_class_counts(self, pos_counts, neg_counts) -> None:
        """Build the distribution-balanced loss from (A,) label counts."""
        self.db_loss = DistributionBalancedLoss(pos_counts, neg_counts, gamma=self.loss_cfg.focal_gamma)

    def set_pos_weight(self, pos_counts, neg_counts) -> None:
        """Set the BCE positive weights (``pos_weight="balanced"``) from (A,) training label counts."""
        self.pos_weight = balanced_pos_weight(pos_counts, neg_counts, self.loss_cfg.pos_weight_cap)

    def datamodule(self):
        """The trainer's datamodule, or None."""
        return getattr(self.trainer, "datamodule", None) if self._trainer is not None else None

    def setup(self, stage: str | None = None) -> None:
        """Class counts of the training split for ``loss.kind="db"`` / ``loss.pos_weight="balanced"``.

        Raises:
            RuntimeError: they are needed and the datamodule has no ``class_counts``.
        """
        c, dm = self.loss_cfg, self.datamodule()
        for needed, done, setter, what in ((c.kind == "db", self.db_loss is not None, self.set_class_counts,
                                            "loss='db'"),
                                           (c.pos_weight == "balanced", self.pos_weight is not None,
                                            self.set_pos_weight, "pos_weight='balanced'")):
            if needed and not done:
                if dm is None or not hasattr(dm, "class_counts"):
                    raise RuntimeError(f"{what} needs class counts: use AUDataModule or call "
                                       f"{setter.__name__}()")
                setter(*dm.class_counts())

    # -- losses
    def occurrence_loss(self, logits, target, mask) -> torch.Tensor:
        """Masked occurrence loss of (B, A) logits against 0/1 targets → scalar."""
        c = self.loss_cfg
        if c.kind == "bce":
            return bce_loss(logits, target, mask, self.pos_weight)
        if c.kind == "focal":
            return sigmoid_focal_loss(logits, target, mask, c.focal_alpha, c.focal_gamma)
        if self.db_loss is None:
            raise RuntimeError("loss='db' before class counts were set")
        return self.db_loss(logits, target, mask)

    def supervised_loss(self, out: dict, batch: dict) -> tuple[torch.Tensor, dict]:
        """(total, {part: scalar}) of a labelled batch; here only ``occ``."""
        parts = {"occ": self.occurrence_loss(out["occ"], batch["occ"], batch["occ_mask"])}
        return parts["occ"], parts

    def intensity_01(self, out: dict) -> torch.Tensor | None:
        """Predicted intensity (B, A) in [0, 1] (FACS / 5), None without an intensity head."""
        return None

    @staticmethod
    def inputs(batch: dict) -> torch.Tensor:
        """The model input of a labelled batch: ``features`` if present, else ``image``."""
        return batch["features"] if "features" in batch else batch["image"]

    # -- validation
    def validation_step(self, batch, batch_idx):
        x = self.inputs(batch)
        out = self(x)
        loss, _ = self.supervised_loss(out, batch)
        self.log("val/loss", loss, prog_bar=True, batch_size=len(x))
        inten = self.intensity_01(out)
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
        """Per-AU and macro metrics (``"<metric>/<AU>"``, ``"<metric>_macro"``) of collected validation records
        (``prob``/``occ`` (N, A), optional ``int_pred``/``int_true`` (N, A) in [0, 1]); NaNs omitted."""
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
        if self.val_merge_sides:
            merged, groups = sided_groups(self.au_names)
            if len(merged) < len(self.au_names):
                recs = [{k: torch.from_numpy(merge_sided(v.numpy(), groups)) for k, v in r.items()} for r in self._val]
                metrics.update({f"merged/{k}": v for k, v in self.compute_metrics(recs, merged).items()})
        self.last_metrics = metrics
        if metrics:
            self.log_dict({f"{prefix}/{k}": v for k, v in metrics.items()})
        self._val = []

    # -- optimisation
    def param_groups(self) -> list[dict]:
        """AdamW parameter groups (``{"params", "lr", …}``)."""
        raise NotImplementedError

    def configure_optimizers(self):
        o = self.optim_cfg
        opt = torch.optim.AdamW(self.param_groups(), lr=o.lr, weight_decay=o.weight_decay)
        total = max(int(self.trainer.estimated_stepping_batches), 1) if self._trainer is not None else 1000
        factor = WarmupDecaySchedule(0.0, 1.0, o.min_lr_ratio, o.warmup_steps, max(total, o.warmup_steps),
                                     decay="cosine", warmup_offset=1)
        return {"optimizer": opt, "lr_scheduler": lambda_lr(opt, factor)}

    def contract(self) -> dict:
        """The input contract stored with the exported model (ONNX metadata / safetensors config)."""
        raise NotImplementedError


class AUFeaturesTask(AUTaskBase):
    """AU occurrence from per-face feature vectors: :class:`mien.models.au.head.AUHead` (the recipe of mien's
    shipped default AU model, ``mien train au fit --config default``; saved for ``mien analyze`` with
    :func:`mien.export.au.export_au_head`).

    Batches: ``{"features": (B, in_features) float32, "occ", "occ_mask", …}`` from
    ``AUDataModule(input="features")`` (the default model's 1660 features: face-api expression embedding ‖
    canonical-aligned MediaPipe mesh). The AUHead's standardisation (mean/std) is fit on the training rows at
    ``fit`` start (:meth:`mien.tasks.au.AUDataModule.feature_stats`); mirrored rows come from the data module
    (``data.features.mirror``). No augmentation, semi-supervision, MIRO or intensity head.

    Args:
        au_names, loss, optim, val_merge_sides: see :class:`AUTaskBase`.
        in_features: D. hidden: the AUHead's hidden width (0 = linear). dropout: on its standardised input and
            hidden layer.
    """

    def __init__(self, au_names: list[str], in_features: int = 1660, hidden: int = 128, dropout: float = 0.5,
                 loss: LossConfig = LossConfig(), optim: OptimConfig = OptimConfig(), val_merge_sides: bool = False):  # noqa: B008
        super().__init__(au_names, loss, optim, val_merge_sides)
        self.in_features, self.hidden, self.dropout = int(in_features), int(hidden), float(dropout)
        self._save_config(in_features=self.in_features, hidden=self.hidden, dropout=self.dropout)
        from mien.models.au.head import AUHead

        self.net = AUHead(in_features, self.au_names, hidden=hidden, dropout=dropout)

    def setup(self, stage: str | None = None) -> None:
        """Checks the data's feature width and fits the standardisation on the training rows (once; a loaded
        checkpoint keeps its own).

        Raises:
            ValueError: the datamodule does not give feature batches, or their width is not ``in_features``.
        """
        super().setup(stage)
        dm = self.datamodule()
        if dm is None:
            return
        dim = getattr(dm, "feature_dim", None)
        if dim is None:
            raise ValueError("AUFeaturesTask needs feature batches: use AUDataModule(input='features')")
        if dim != self.in_features:
            raise ValueError(f"the data has {dim} features per face but model.in_features is {self.in_features}")
        untouched = bool((self.net.feature_mean == 0).all() and (self.net.feature_std == 1).all())
        if stage == "fit" and untouched and hasattr(dm, "feature_stats"):
            mean, std = dm.feature_stats()
            self.net.set_normalization(torch.from_numpy(mean), torch.from_numpy(std))

    def forward(self, x: torch.Tensor) -> dict:
        """(B, D) float32 features -> ``{"occ": (B, A) logits}``."""
        return {"occ": self.net(x)}

    def training_step(self, batch, batch_idx):
        lab = batch["labeled"] if "labeled" in batch else batch
        if "features" not in lab:
            raise ValueError("AUFeaturesTask needs 'features' batches: use AUDataModule(input='features')")
        x = lab["features"]
        loss, parts = self.supervised_loss(self(x), lab)
        logs = {f"train/loss_{k}": v for k, v in parts.items()}
        logs["train/loss"] = loss
        self.log_dict(logs, prog_bar=False, batch_size=len(x))
        return loss

    def param_groups(self) -> list[dict]:
        return [{"params": list(self.net.parameters()), "lr": self.optim_cfg.lr}]

    def contract(self) -> dict:
        return {"au_names": list(self.au_names), "input": "features", "in_features": self.in_features,
                "features": "mien.models.au.combine_features(embedding, landmarks) / au_features(images, "
                            "landmarks): face-api expression embedding (256) ‖ canonical-aligned mesh (1404)",
                "threshold": 0.5, "backbone": "features"}
