"""Export of a trained expression tokenizer (Lightning checkpoint of :class:`mien.tasks.tokenizer.TokenizerTask`)
as ``config.json`` + ``model.safetensors``, loadable without Lightning by
:func:`mien.models.tokenizer.load_pretrained`."""

from __future__ import annotations

import os
from pathlib import Path

import torch

__all__ = ["export_checkpoint"]


def export_checkpoint(checkpoint: str | os.PathLike, directory: str | os.PathLike, **overrides) -> Path:
    """Lightning checkpoint of a :class:`TokenizerTask` → ``config.json`` + ``model.safetensors``.

    The model is rebuilt with ``pretrained=False`` (every weight, a frozen timm backbone's included, comes
    from the checkpoint, so nothing is downloaded). ``overrides`` go to ``load_from_checkpoint``.

    Raises:
        FileNotFoundError: no such checkpoint.
    """
    if not Path(checkpoint).is_file():
        raise FileNotFoundError(f"{checkpoint} not found")
    hp = torch.load(str(checkpoint), map_location="cpu", weights_only=False).get("hyper_parameters", {})
    overrides.setdefault("model_overrides", {**(hp.get("model_overrides") or {}), "pretrained": False})
    from mien.tasks.tokenizer import TokenizerTask

    task = TokenizerTask.load_from_checkpoint(str(checkpoint), map_location="cpu", **overrides)
    return task.export(directory)

