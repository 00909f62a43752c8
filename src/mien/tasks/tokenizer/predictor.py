"""Next-expression-token prediction (:class:`PredictorTask`, seed 1 prediction branch)."""

from __future__ import annotations

import torch

from mien.models.registry import create_model
from mien.tasks.config import as_dict
from mien.tasks.tokenizer.config import PredictorWeights, ScheduleConfig
from mien.tasks.tokenizer.data import unpack_batch
from mien.tasks.tokenizer.losses import prediction_losses
from mien.tasks.tokenizer.task import ScheduledTask

__all__ = ["PredictorTask"]


class PredictorTask(ScheduledTask):
    """LightningModule training an :class:`~mien.models.tokenizer.nets.ExpressionPredictor` on the tokens of
    an expression tokenizer (seed 1 prediction branch, ``train_expression_prediction.py``).

    Args:
        predictor, predictor_overrides: registered predictor name and config overrides.
        tokenizer, tokenizer_overrides: registered tokenizer name and overrides, or ``tokenizer_dir``: an export
            (:func:`~mien.models.tokenizer.save_pretrained`) to load instead.
        freeze_tokenizer: keep the tokenizer frozen (eval mode, tokens under no_grad); False trains both, as
            the seed does.
        schedule: AdamW and LR schedule (:class:`~mien.tasks.tokenizer.config.ScheduleConfig`).
        weights: (initial, peak, final) loss weights (:class:`~mien.tasks.tokenizer.config.PredictorWeights`;
            seed run: prediction .01/.15/.5, temporal .1/.3/.2, diversity .5/.4/.2).

    Batches: as :class:`TokenizerTask` (frames (B, T, 3, H, W), T ≥ 2, optional subject_id).
    Logged: loss, loss_prediction, loss_temporal, loss_diversity, w_*, lr.

    Raises:
        ValueError: predictor and tokenizer sizes differ.
    """

    def __init__(self, predictor: str = "tokenizer-predictor-tiny", predictor_overrides: dict | None = None,
                 tokenizer: str = "tokenizer-tiny", tokenizer_overrides: dict | None = None,
                 tokenizer_dir: str | None = None, freeze_tokenizer: bool = True,
                 schedule: ScheduleConfig = ScheduleConfig(), weights: PredictorWeights = PredictorWeights()):  # noqa: B008
        super().__init__()
        self._init_schedule(schedule, weights, PredictorWeights)
        self.freeze_tokenizer = bool(freeze_tokenizer)
        self.save_hyperparameters({"predictor": predictor, "predictor_overrides": predictor_overrides,
                                   "tokenizer": tokenizer, "tokenizer_overrides": tokenizer_overrides,
                                   "tokenizer_dir": tokenizer_dir, "freeze_tokenizer": self.freeze_tokenizer,
                                   "schedule": as_dict(self.schedule_cfg), "weights": as_dict(self.weights_cfg)})
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

    def train(self, mode: bool = True):
        super().train(mode)
        if self.freeze_tokenizer:
            self.tokenizer.eval()
        return self

    def compute_losses(self, frames: torch.Tensor, subject_ids=None,
                       weights: dict[str, float] | None = None) -> dict[str, torch.Tensor]:
        if frames.shape[1] < 2:
            raise ValueError("next-token prediction needs clips of T >= 2 frames")
        w = weights or self.loss_weights()
        if self.freeze_tokenizer:
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
        frames, ids = unpack_batch(batch)
        logs = self.compute_losses(frames, ids)
        logs["lr"] = torch.tensor(float(self.optimizers().param_groups[0]["lr"]), device=frames.device)
        self.log_dict({f"train/{k}": v.detach() for k, v in logs.items()}, on_step=True, on_epoch=False,
                      batch_size=frames.shape[0])
        return logs["loss"]

    def validation_step(self, batch, batch_idx, dataloader_idx: int = 0):
        frames, ids = unpack_batch(batch)
        logs = self.compute_losses(frames, ids)
        self.log_dict({f"{self.val_prefix(dataloader_idx)}/{k}": v.detach() for k, v in logs.items()},
                      on_step=False, on_epoch=True, batch_size=frames.shape[0], add_dataloader_idx=False)
        return logs["loss"]

