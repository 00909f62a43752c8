"""Expression-tokenizer training (Lightning; ``pip install "mien[train]"``).

* :class:`TokenizerTask` (:mod:`~mien.tasks.tokenizer.task`) — joint training of the expression tokenizer;
  :class:`ScheduledTask`, the LR + loss-weight schedule it shares with
* :class:`PredictorTask` (:mod:`~mien.tasks.tokenizer.predictor`) — next-token predictor on a tokenizer's tokens;
* :mod:`~mien.tasks.tokenizer.losses` — reconstruction / temporal / diversity / variance / prediction losses;
* :mod:`~mien.tasks.tokenizer.data` — video files → face-crop clips (:func:`load_face_crops`,
  :class:`VideoCropsDataModule`).

``mien train tokenizer|predictor`` (:mod:`mien.cli.train`) runs them with YAML configs from
``mien/configs/tokenizer/`` and ``mien/configs/predictor/``; export: :mod:`mien.export.tokenizer`.
"""

from mien.tasks.tokenizer.data import (
    ClipTensorDataset,
    VideoCropsDataModule,
    clips_from_crops,
    load_face_crops,
)
from mien.tasks.tokenizer.losses import (
    PerceptualLoss,
    diversity_loss,
    motion_weights,
    prediction_losses,
    similarity_stats,
    temporal_losses,
    variance_loss,
)
from mien.tasks.tokenizer.predictor import PredictorTask
from mien.tasks.tokenizer.task import ScheduledTask, TokenizerTask

__all__ = ["ClipTensorDataset", "PerceptualLoss", "PredictorTask", "ScheduledTask", "TokenizerTask",
           "VideoCropsDataModule", "clips_from_crops", "diversity_loss", "load_face_crops", "motion_weights",
           "prediction_losses", "similarity_stats", "temporal_losses", "variance_loss"]
