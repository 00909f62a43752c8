"""Export of a trained SMIRK/TEASER model (Lightning checkpoint of :class:`mien.tasks.face3d.Face3DTask`) as
``config.json`` + ``model.safetensors``, loadable without Lightning by
:func:`mien.models.face3d.load_face3d_encoder` / :func:`~mien.models.face3d.load_face3d_renderer`."""

from __future__ import annotations

import os
from pathlib import Path

import torch

__all__ = ["export_face3d_checkpoint"]


def export_face3d_checkpoint(checkpoint: str | os.PathLike, directory: str | os.PathLike,
                             extra: dict | None = None, bn_data: str | None = None, bn_val_fraction: float = 0.1,
                             bn_batches: int = 25) -> Path:
    """Lightning checkpoint of a :class:`~mien.tasks.face3d.Face3DTask` → ``directory`` (config.json +
    model.safetensors). The model is rebuilt with ``pretrained=False`` (every weight comes from the checkpoint).

    Args:
        bn_data: a ``mien prepare`` dataset: recompute the encoders' batch-norm statistics on the real crops of its
            training subjects (:func:`mien.data.datamodule.subject_split` with ``bn_val_fraction``; at most
            ``bn_batches`` clips of 8) before saving (:func:`mien.tasks.face3d.recalibrate_batchnorm`) — for
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
        from mien.data.datamodule import _collate, subject_split
        from mien.data.reader import ClipDataset
        from mien.tasks.face3d import recalibrate_batchnorm

        train_urls, _ = subject_split(bn_data, bn_val_fraction)
        loader = torch.utils.data.DataLoader(ClipDataset(train_urls), batch_size=8, collate_fn=_collate)

        def images():
            for i, batch in enumerate(loader):
                if i >= bn_batches:
                    return
                yield task.unpack(batch, sample=False)[0]

        n = recalibrate_batchnorm(task.net.encoder, images())
        info["batchnorm_recalibrated"] = {"data": os.path.abspath(bn_data), "images": n,
                                          "shards": [u.rsplit("/", 1)[-1] for u in train_urls]}
    return task.export(directory, info)
