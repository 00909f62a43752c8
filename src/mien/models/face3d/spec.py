"""Which face model a ``--face3d-model`` / ``--model`` value names: the shipped ``mien-face``, a ``.npz`` from
``mien train face-model``, or a user-supplied FLAME file (``flame:PATH``)."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

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
