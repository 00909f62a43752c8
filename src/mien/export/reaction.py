"""Export of reaction checkpoints (Lightning, :mod:`mien.tasks.reaction`) to ``config.json`` + ``model.safetensors``,
loadable without Lightning: a :class:`~mien.tasks.reaction.ReactionTask` checkpoint → the whole
:class:`~mien.models.reaction.ReactionModel` (:func:`mien.models.reaction.load_reaction_model`); a
:class:`~mien.tasks.reaction.ReactionTokenizerTask` checkpoint → the tokenizer
(:func:`mien.models.reaction.load_reaction_tokenizer`, what ``mien train reaction --model.tokenizer`` takes)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

__all__ = ["export_reaction_checkpoint"]


def export_reaction_checkpoint(checkpoint: str | os.PathLike, directory: str | os.PathLike) -> tuple[str, Path]:
    """Checkpoint → export folder; returns ``(kind, folder)`` with kind ``"reaction"`` or ``"tokenizer"``.

    Raises:
        FileNotFoundError: no such checkpoint. ValueError: not a checkpoint of a reaction task.
    """
    if not Path(checkpoint).is_file():
        raise FileNotFoundError(f"{checkpoint} not found")
    hp = torch.load(str(checkpoint), map_location="cpu", weights_only=False).get("hyper_parameters", {})
    from mien.tasks.reaction import ReactionTask, ReactionTokenizerTask

    if "speaker_feature_names" in hp:
        task = ReactionTask.load_from_checkpoint(str(checkpoint), map_location="cpu")
        return "reaction", task.eval().export(directory)
    if "seed_n_exp" in hp:
        task = ReactionTokenizerTask.load_from_checkpoint(str(checkpoint), map_location="cpu")
        return "tokenizer", task.eval().export(directory)
    raise ValueError(f"{checkpoint}: not a checkpoint of mien.tasks.reaction (ReactionTask / ReactionTokenizerTask)")
