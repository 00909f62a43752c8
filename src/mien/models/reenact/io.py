"""Save / load reenactment models as ``config.json`` + ``model.safetensors`` (no Lightning).

``config.json``: ``{"format": "mien-reenact", "format_version": 1, "kind": "reenact" | "student" | "warpguided",
"config": {...}, "contract": InputContract dict, "au_names": [...] | null, "avatars": [...] (student),
"mien_version"}``. ``model.safetensors``: the ``state_dict``, plus ``au_directions`` (A, Z) float32 when the
model has AU directions (rows in ``au_names`` order).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from mien.models.folder import read_model_folder, read_model_meta, write_model_folder
from mien.models.reenact.config import CROP, ReenactConfig, StudentConfig

FORMAT = "mien-reenact"
FORMAT_VERSION = 1

__all__ = ["export_kind", "load_reenact_model", "load_student_model", "load_warpguided_model", "save_reenact_model"]


def save_reenact_model(model, directory: str | os.PathLike, extra: dict | None = None) -> Path:
    """Write a :class:`ReenactModel`, :class:`Student` or :class:`WarpGuidedRefiner` into ``directory`` (created; files replaced atomically).

    Args:
        extra: more JSON metadata (e.g. the student's avatar sources, training data).

    Raises:
        TypeError: not a reenactment model.
    """
    from mien.models.reenact.extra import Student
    from mien.models.reenact.nets import ReenactModel
    from mien.models.reenact.warpguided import WarpGuidedRefiner
    from mien.models.registry import InputContract

    if isinstance(model, ReenactModel):
        kind = "reenact"
    elif isinstance(model, Student):
        kind = "student"
    elif isinstance(model, WarpGuidedRefiner):
        kind = "warpguided"
    else:
        raise TypeError(f"expected ReenactModel, Student or WarpGuidedRefiner, got {type(model).__name__}")
    state = {k: v.detach().float() if v.is_floating_point() else v.detach() for k, v in model.state_dict().items()}
    dirs = getattr(model, "au_directions", None)
    names = sorted(dirs) if dirs else None
    if names:
        state["au_directions"] = torch.stack([dirs[n].detach().cpu().float() for n in names])
    meta = {"kind": kind, "config": model.config.to_dict(),
            "contract": InputContract(model.size, "0-1", crop=CROP).to_dict(), "au_names": names, **(extra or {})}
    return write_model_folder(directory, meta, state, fmt=FORMAT, version=FORMAT_VERSION)


def _read(directory, kind: str):
    return read_model_folder(directory, fmt=FORMAT, version=FORMAT_VERSION, kind=kind, what=f"{kind} model",
                             hint="export a model with `mien export reenact`")


def export_kind(directory: str | os.PathLike) -> str:
    """The ``kind`` of an export folder ("reenact", "student" or "warpguided").

    Raises:
        mien.errors.InputError: no readable ``config.json`` of this format.
    """
    meta = read_model_meta(directory, fmt=FORMAT, version=None, what="reenactment model",
                           hint="export a model with `mien export reenact`")
    return str(meta.get("kind", "reenact"))


def load_warpguided_model(directory: str | os.PathLike, device: str | torch.device = "cpu"):
    """A :class:`~mien.models.reenact.warpguided.WarpGuidedRefiner` written by :func:`save_reenact_model`, in
    eval mode.

    Raises:
        mien.errors.InputError: files missing or not a warp-guided export.
    """
    from mien.models.reenact.warpguided import WarpGuidedConfig, WarpGuidedRefiner

    meta, state = _read(directory, "warpguided")
    model = WarpGuidedRefiner(WarpGuidedConfig.from_dict(meta["config"]))
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()


def load_reenact_model(directory: str | os.PathLike, device: str | torch.device = "cpu"):
    """A :class:`~mien.models.reenact.nets.ReenactModel` written by :func:`save_reenact_model`, in eval mode.

    Raises:
        mien.errors.InputError: files missing, not a reenact export, or a student export.
    """
    from mien.models.reenact.nets import ReenactModel

    meta, state = _read(directory, "reenact")
    dirs = state.pop("au_directions", None)
    model = ReenactModel(ReenactConfig.from_dict(meta["config"]))
    model.load_state_dict(state, strict=True)
    if dirs is not None:
        model.au_directions = {n: dirs[i].to(device) for i, n in enumerate(meta["au_names"])}
    return model.to(device).eval()


def load_student_model(directory: str | os.PathLike, device: str | torch.device = "cpu"):
    """A :class:`~mien.models.reenact.extra.Student` written by :func:`save_reenact_model`, in eval mode.

    Raises:
        mien.errors.InputError: files missing or not a student export.
    """
    from mien.models.reenact.extra import Student

    meta, state = _read(directory, "student")
    model = Student(StudentConfig.from_dict(meta["config"]))
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()
