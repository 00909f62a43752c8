"""Export of a trained SMIRK/TEASER model (Lightning checkpoint of :class:`mien.tasks.face3d.Face3DTask`) as
``config.json`` + ``model.safetensors``, loadable without Lightning by
:func:`mien.models.face3d.load_face3d_encoder` / :func:`~mien.models.face3d.load_face3d_renderer`."""

from __future__ import annotations

import os
from pathlib import Path

import torch

__all__ = ["export_face3d_checkpoint"]


def export_face3d_checkpoint(checkpoint: str | os.PathLike, directory: str | os.PathLike,
                             extra: dict | None = None) -> Path:
    """Lightning checkpoint of a :class:`~mien.tasks.face3d.Face3DTask` → ``directory`` (config.json +
    model.safetensors). The model is rebuilt with ``pretrained=False`` (every weight comes from the checkpoint).

    Raises:
        FileNotFoundError: no such checkpoint. ValueError: not a Face3DTask checkpoint.
    """
    if not Path(checkpoint).is_file():
        raise FileNotFoundError(f"{checkpoint} not found")
    hp = torch.load(str(checkpoint), map_location="cpu", weights_only=False).get("hyper_parameters", {})
    if "model" not in hp or "cycle" not in hp:
        raise ValueError(f"{checkpoint}: not a checkpoint of mien.tasks.face3d.Face3DTask")
    from mien.tasks.face3d import Face3DTask

    over = {**(hp.get("model_overrides") or {}), "pretrained": False}
    task = Face3DTask.load_from_checkpoint(str(checkpoint), map_location="cpu", model_overrides=over)
    return task.export(directory, {"checkpoint": os.path.abspath(checkpoint), **(extra or {})})
