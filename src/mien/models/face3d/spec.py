"""Which face model a ``--face3d-model`` / ``--model`` value names: the shipped ``mien-face``, a ``.npz`` from
``mien train face-model``, or a user-supplied FLAME file (``flame:PATH``)."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import numpy as np

from mien.errors import InputError
from mien.models.face3d.base import FaceModel

FLAME_PREFIX = "flame:"
FLAME_EMBEDDING = "mediapipe_landmark_embedding.npz"


def shipped_model_path() -> Path:
    """Path of the shipped ``mien/assets/face3d/mien_face.npz`` (a real file of the installed package)."""
    with resources.as_file(resources.files("mien.assets").joinpath("face3d/mien_face.npz")) as p:
        return Path(p)


def open_face_model(spec: str | os.PathLike | None = None) -> tuple[FaceModel, list[Path]]:
    """Load the face model a user named.

    Args:
        spec: None — the shipped ``mien-face``; a path — a ``mien-face`` ``.npz`` (``mien train face-model``);
            ``"flame:/path/generic_model.pkl"`` or ``"flame:/path/generic_model.pkl,/path/embedding.npz"`` —
            FLAME 2020 as the user downloaded it (never shipped), with its MediaPipe landmark embedding
            (default: ``mediapipe_landmark_embedding.npz`` next to the ``.pkl``).

    Returns:
        (model, files read) — the files for ``meta["models"]`` hashes.

    Raises:
        InputError: missing or invalid files, or a FLAME model without a landmark embedding (one line).
    """
    from mien.models.face3d.flame import load_flame
    from mien.models.face3d.mien_face import load_face_model

    if spec is None:
        path = shipped_model_path()
        return load_face_model(path), [path]
    text = os.fspath(spec)
    if text.startswith(FLAME_PREFIX):
        pkl, _, emb = text[len(FLAME_PREFIX):].partition(",")
        pkl_path = Path(pkl)
        emb_path = Path(emb) if emb else pkl_path.with_name(FLAME_EMBEDDING)
        if not emb_path.is_file():
            raise InputError(emb_path, "FLAME landmark embedding not found (needed to fit MediaPipe landmarks; "
                                       "pass flame:MODEL.pkl,EMBEDDING.npz)")
        return load_flame(pkl_path, emb_path), [pkl_path, emb_path]
    path = Path(text)
    return load_face_model(path), [path]


def check_face_model_spec(spec: str | os.PathLike) -> None:
    """Cheap early check of a face-model spec (files exist; a ``.npz`` says it is a ``mien-face`` model), so
    that a bad ``--face3d-model`` fails once, naming the model file, before any input is read.

    Raises:
        InputError: missing file, or not a ``mien-face`` ``.npz`` (the full load happens in :func:`open_face_model`).
    """
    from mien.models.face3d.mien_face import FORMAT

    text = os.fspath(spec)
    if text.startswith(FLAME_PREFIX):
        pkl, _, emb = text[len(FLAME_PREFIX):].partition(",")
        for p, what in ((Path(pkl), "FLAME model file"), (Path(emb) if emb else Path(pkl).with_name(FLAME_EMBEDDING),
                                                         "FLAME landmark embedding")):
            if not p.is_file():
                raise InputError(p, f"{what} not found")
        return
    path = Path(text)
    if not path.is_file():
        raise InputError(path, "face model file not found")
    try:
        with np.load(path, allow_pickle=False) as z:
            fmt = str(z["format"]) if "format" in z.files else "missing"
    except Exception as e:  # zipfile.BadZipFile, ValueError, OSError …
        raise InputError(path, f"not a mien-face model (.npz): {type(e).__name__}: {e}") from None
    if fmt != FORMAT:
        raise InputError(path, f"not a mien-face model (format {fmt!r}, expected {FORMAT!r})")
