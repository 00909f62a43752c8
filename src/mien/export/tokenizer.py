"""Export of a trained expression tokenizer (Lightning checkpoint of :class:`mien.tasks.tokenizer.TokenizerTask`)
as ``config.json`` + ``model.safetensors``, loadable without Lightning by
:func:`mien.models.tokenizer.load_pretrained`."""

from __future__ import annotations

import os
from pathlib import Path

import torch

__all__ = ["export_checkpoint"]


def export_checkpoint(checkpoint: str | os.PathLike, directory: str | os.PathLike, bank_data: str | None = None,
                      bank_method: str = "kmeans", val_fraction: float = 0.1, val_time_fraction: float = 0.0,
                      bank_pool: int = 512, bank: int | None = None, bank_k: int | None = None,
                      bank_temperature: float | None = None, bank_distance: str | None = None, **overrides) -> Path:
    """Lightning checkpoint of a :class:`TokenizerTask` → ``config.json`` + ``model.safetensors``.

    The model is rebuilt with ``pretrained=False`` (every weight, a frozen timm backbone's included, comes
    from the checkpoint, so nothing is downloaded). ``overrides`` go to ``load_from_checkpoint``.

    Args:
        bank_data: a ``mien prepare`` dataset: fill the warp decoder's exemplar banks (``warp_bank`` > 0) from the
            clips the model trained on (:func:`mien.data.datamodule.training_loader` with ``val_fraction`` and
            ``val_time_fraction``, as in training; :func:`mien.tasks.tokenizer.banks.fill_banks` with
            ``bank_method`` and ``bank_pool``). ``bank_method`` "kmeans" needs scikit-learn (``mien[train]``).
        bank: give a trained warp tokenizer an exemplar bank of ``bank`` ≥ 1 entries per subject at export
            (:func:`mien.models.tokenizer.export.with_bank`; needs ``bank_data``); ``bank_k``, ``bank_temperature``,
            ``bank_distance``: its settings (only with ``bank``; None: 1, 1.0, "aligned").

    Raises:
        FileNotFoundError: no such checkpoint.
        ValueError: ``bank`` < 1, bank settings without ``bank``, ``bank_method`` "kmeans" without scikit-learn, a
            tokenizer with exemplar banks exported without ``bank_data`` (or ``bank_data`` for one without banks).
        mien.errors.InputError: ``bank_data`` is not a prepared dataset of this model's subjects.
    """
    if bank is not None and bank < 1:
        raise ValueError(f"--bank must be >= 1, got {bank}")
    if bank is None and (bank_k, bank_temperature, bank_distance) != (None, None, None):
        raise ValueError("--bank-k, --bank-temperature and --bank-distance set a new bank: give --bank N too")
    if bank_data is not None and bank_method == "kmeans":
        import importlib.util

        if importlib.util.find_spec("sklearn") is None:
            raise ValueError("--bank-method kmeans needs scikit-learn: pip install 'mien[train]' or --bank-method fps")
    if not Path(checkpoint).is_file():
        raise FileNotFoundError(f"{checkpoint} not found")
    hp = torch.load(str(checkpoint), map_location="cpu", weights_only=False).get("hyper_parameters", {})
    overrides.setdefault("model_overrides", {**(hp.get("model_overrides") or {}), "pretrained": False})
    from mien.tasks.tokenizer import TokenizerTask

    task = TokenizerTask.load_from_checkpoint(str(checkpoint), map_location="cpu", **overrides)
    if bank is not None:
        from mien.models.tokenizer.export import with_bank

        given = {"k": bank_k, "temperature": bank_temperature, "distance": bank_distance}
        task.model = with_bank(task.model, bank, **{k: v for k, v in given.items() if v is not None})
    if bank_data is not None:
        from mien.data.datamodule import training_loader
        from mien.tasks.tokenizer.banks import fill_banks

        loader, _ = training_loader(bank_data, val_fraction, val_time_fraction)
        with torch.no_grad():
            fill_banks(task, loader, bank_method, bank_pool, source=str(bank_data))
    return task.export(directory)
