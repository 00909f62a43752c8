"""Export of a trained SMIRK/TEASER model (Lightning checkpoint of :class:`mien.tasks.face3d.Face3DTask`) as
``config.json`` + ``model.safetensors``, loadable without Lightning by
:func:`mien.models.face3d.load_face3d_encoder` / :func:`~mien.models.face3d.load_face3d_renderer`."""

from __future__ import annotations

import os
from pathlib import Path

import torch

__all__ = ["export_face3d_checkpoint"]


def export_face3d_checkpoint(checkpoint: str | os.PathLike, directory: str | os.PathLike,
                             extra: dict | None = None, bn_data: str | None = None, val_fraction: float = 0.1,
                             val_time_fraction: float = 0.0, bn_batches: int = 25) -> Path:
    """Lightning checkpoint of a :class:`~mien.tasks.face3d.Face3DTask` → ``directory`` (config.json +
    model.safetensors). The model is rebuilt with ``pretrained=False`` (every weight comes from the checkpoint).

    Args:
        bn_data: a ``mien prepare`` dataset: recompute the encoders' batch-norm statistics on the real crops of the
            clips the model trained on (:func:`mien.data.datamodule.training_loader` with ``val_fraction`` and
            ``val_time_fraction``, as in training; at most ``bn_batches`` batches of 8 clips) before saving (:func:`mien.tasks.face3d.recalibrate_batchnorm`) — for
            checkpoints whose statistics were moved by generated images (trained before the cycle path froze them).

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
    info = {"checkpoint": os.path.abspath(checkpoint), **(extra or {})}
    if bn_data is not None:
        from mien.data.datamodule import training_loader
        from mien.tasks.face3d import recalibrate_batchnorm

        loader, train_urls = training_loader(bn_data, val_fraction, val_time_fraction)

        def images():
            for i, batch in enumerate(loader):
                if i >= bn_batches:
                    return
                yield task.unpack(batch, sample=False)[0]

        n = recalibrate_batchnorm(task.net.encoder, images())
        info["batchnorm_recalibrated"] = {"data": os.path.abspath(bn_data), "images": n,
                                          "shards": [u.rsplit("/", 1)[-1] for u in train_urls]}
    return task.export(directory, info)
