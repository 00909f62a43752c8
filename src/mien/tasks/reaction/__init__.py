"""Listener-reaction training (Lightning; ``pip install "mien[train]"``): :class:`ReactionTokenizerTask`
(``mien train reaction-tokenizer``), :class:`ReactionTask` (``mien train reaction``), their option groups and
:class:`ReactionDataModule` over dyadic shards. Configs: ``mien/configs/reaction-tokenizer/``,
``mien/configs/reaction/``; export: :mod:`mien.export.reaction` (``mien export reaction``)."""

from mien.tasks.reaction.config import ReactionLoss, ReactionSchedule
from mien.tasks.reaction.data import ReactionDataModule, collate, held_out
from mien.tasks.reaction.task import ReactionTask, ReactionTokenizerTask

__all__ = ["ReactionDataModule", "ReactionLoss", "ReactionSchedule", "ReactionTask", "ReactionTokenizerTask",
           "add_cli_links", "collate", "held_out"]


def add_cli_links(parser) -> None:
    """``mien train reaction``: ``model.speaker_feature_names`` and ``model.fps`` from the data module's
    ``feature_names`` (the stored speaker feature columns of the chosen groups) and ``fps``, so model and data
    cannot disagree."""
    parser.link_arguments("data.feature_names", "model.speaker_feature_names", apply_on="instantiate")
    parser.link_arguments("data.fps", "model.fps", apply_on="instantiate")
