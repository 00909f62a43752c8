"""Export of a trained expression tokenizer (Lightning checkpoint of :class:`mien.tasks.tokenizer.TokenizerTask`)
as ``config.json`` + ``model.safetensors``, loadable without Lightning by
:func:`mien.models.tokenizer.load_pretrained`."""

from __future__ import annotations

import os
from pathlib import Path

import torch

__all__ = ["export_checkpoint"]


def export_checkpoint(checkpoint: str | os.PathLike, directory: str | os.PathLike, bank_data: str | None = None,
                      bank_method: str = "kmeans", bank_val_fraction: float = 0.1, bank_pool: int = 512,
                      bank: int | None = None, bank_k: int = 1, bank_temperature: float = 1.0,
                      bank_distance: str = "aligned", **overrides) -> Path:
    """Lightning checkpoint of a :class:`TokenizerTask` → ``config.json`` + ``model.safetensors``.

    The model is rebuilt with ``pretrained=False`` (every weight, a frozen timm backbone's included, comes
    from the checkpoint, so nothing is downloaded). ``overrides`` go to ``load_from_checkpoint``.

    Args:
        bank_data: a ``mien prepare`` dataset: fill the warp decoder's exemplar banks (``warp_bank`` > 0) from the
            crops of its training subjects (:func:`mien.data.datamodule.subject_split` with ``bank_val_fraction``,
            as in training; :func:`mien.tasks.tokenizer.banks.fill_banks` with ``bank_method`` and ``bank_pool``).
        bank, bank_k, bank_temperature, bank_distance: give a trained warp tokenizer an exemplar bank of ``bank``
            entries per subject at export (:func:`mien.models.tokenizer.export.with_bank`; needs ``bank_data``).

    Raises:
        FileNotFoundError: no such checkpoint.
        ValueError: a tokenizer with exemplar banks exported without ``bank_data`` (or ``bank_data`` for one
            without banks).
    """
    if not Path(checkpoint).is_file():
        raise FileNotFoundError(f"{checkpoint} not found")
    hp = torch.load(str(checkpoint), map_location="cpu", weights_only=False).get("hyper_parameters", {})
    overrides.setdefault("model_overrides", {**(hp.get("model_overrides") or {}), "pretrained": False})
    from mien.tasks.tokenizer import TokenizerTask

    task = TokenizerTask.load_from_checkpoint(str(checkpoint), map_location="cpu", **overrides)
    if bank:
        from mien.models.tokenizer.export import with_bank

        task.model = with_bank(task.model, bank, bank_k, bank_temperature, bank_distance)
    if bank_data is not None:
        from mien.data.datamodule import _collate, subject_split
        from mien.data.reader import ClipDataset
        from mien.tasks.tokenizer.banks import fill_banks

        train_urls, _ = subject_split(bank_data, bank_val_fraction)
        loader = torch.utils.data.DataLoader(ClipDataset(train_urls), batch_size=8, collate_fn=_collate)
        with torch.no_grad():
            fill_banks(task, loader, bank_method, bank_pool)
    return task.export(directory)

