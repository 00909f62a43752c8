"""In-memory fits of :class:`~mien.tasks.au.AUFeaturesTask` on feature arrays — the default AU recipe without a
data module or files, for model selection loops (nested cross-validation, :mod:`mien.pipelines.model_selection`).

The training is the task's own (``training_step``, BCE with balanced ``pos_weight``, AdamW with the task's
schedule) run by a quiet Lightning ``Trainer`` on one full batch per epoch, exactly like
``mien train au fit --config default`` (whose data module also gives one full batch of training rows plus their
mirrored copies).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from mien.data.labels.facs import flip_permutation

__all__ = ["HeadRecipe", "fit_features_head"]


@dataclass(frozen=True)
class HeadRecipe:
    """Hyper-parameters of one AUHead candidate (defaults = the shipped default model's recipe).

    Attributes:
        hidden: hidden width (0 = linear head). dropout: on the standardised input and the hidden layer.
        epochs: full-batch AdamW steps. lr, weight_decay: AdamW. pos_weight_cap: cap of #neg/#pos.
    """

    hidden: int = 128
    dropout: float = 0.5
    epochs: int = 300
    lr: float = 1e-3
    weight_decay: float = 1e-2
    pos_weight_cap: float = 20.0


class _FullBatch(torch.utils.data.Dataset):
    def __init__(self, batch: dict):
        self.batch = batch

    def __len__(self) -> int:
        return 1

    def __getitem__(self, i: int) -> dict:
        return self.batch


def fit_features_head(features: np.ndarray, labels: np.ndarray, au_names: Sequence[str],
                      mirrored: np.ndarray | None = None, recipe: HeadRecipe = HeadRecipe(),  # noqa: B008
                      seed: int = 0):
    """Train an :class:`~mien.models.au.head.AUHead` on (features, labels) with :class:`AUFeaturesTask`.

    Args:
        features: float32 (N, D) training rows.
        labels: (N, A) 0/1 occurrence; NaN = not coded (masked out of the loss).
        au_names: A AU names (sided names are swapped for mirrored rows).
        mirrored: optional float32 (N, D) features of the mirrored images, added as training rows.
        recipe: :class:`HeadRecipe`.
        seed: weight-initialisation and dropout seed.

    Returns:
        the trained AUHead in eval mode (CPU), standardisation fit on the training rows (mirrored included).

    Raises:
        ValueError: shapes do not match.
    """
    import lightning.pytorch as pl

    from mien.tasks.au.config import LossConfig, OptimConfig
    from mien.tasks.au.task import AUFeaturesTask

    x = np.asarray(features, np.float32)
    y = np.asarray(labels, np.float32)
    if x.ndim != 2 or y.ndim != 2 or len(x) != len(y) or y.shape[1] != len(au_names):
        raise ValueError(f"expected features (N, D) and labels (N, {len(au_names)}), got {x.shape}, {y.shape}")
    if mirrored is not None:
        perm = flip_permutation(list(au_names))
        x = np.concatenate([x, np.asarray(mirrored, np.float32)])
        y = np.concatenate([y, y if perm is None else y[:, perm]])
    mask = np.isfinite(y)
    occ = np.where(mask, y, 0.0)
    pl.seed_everything(seed, verbose=False)
    task = AUFeaturesTask(list(au_names), in_features=x.shape[1], hidden=recipe.hidden, dropout=recipe.dropout,
                          loss=LossConfig(kind="bce", pos_weight="balanced", pos_weight_cap=recipe.pos_weight_cap),
                          optim=OptimConfig(lr=recipe.lr, weight_decay=recipe.weight_decay, warmup_steps=0,
                                            min_lr_ratio=1.0))
    task.set_pos_weight((occ * mask).sum(0), ((1 - occ) * mask).sum(0))
    xt = torch.from_numpy(x)
    xd = xt.double()
    task.net.set_normalization(xd.mean(0).float(), xd.std(0).float())
    batch = {"features": xt, "occ": torch.from_numpy(occ.astype(np.float32)),
             "occ_mask": torch.from_numpy(mask.astype(np.float32))}
    loader = torch.utils.data.DataLoader(_FullBatch(batch), batch_size=None, shuffle=False)
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_epochs=recipe.epochs, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         num_sanity_val_steps=0, deterministic=True, log_every_n_steps=recipe.epochs + 1)
    trainer.fit(task, train_dataloaders=loader)
    return task.net.eval()
