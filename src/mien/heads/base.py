"""The head protocol: one per-face neural model used at inference, as :class:`mien.pipelines.frame_analyzer.FrameAnalyzer`
sees it.

A head declares

* ``name`` — its key in ``meta["models"]``;
* ``contract`` — the registered :class:`~mien.models.registry.InputContract` of the crop it takes (crop kind,
  size, scale), or None for a head that takes no crop (it works on other heads' columns and the landmarks);
  heads whose contracts have equal :attr:`~mien.models.registry.InputContract.key` share one crop per face;
* ``columns()`` — the :class:`~mien.results.result.ColumnSpec` of every per-row column it adds (units,
  descriptions); the empty (zero-row) columns and ``meta["extra_columns"]`` are derived from it
  (:func:`empty_columns`, :func:`column_meta`);
* ``requires`` — columns of other heads it reads (they run first);
* ``__call__(crops, landmarks, **inputs) -> {column: array}`` — batched over faces of any frames;
* ``finish(columns, face_id) -> {column: array}`` — optional post-step over all rows (per-track
  normalisation), called once rows are complete and sorted;
* ``model_info()`` — name, files and SHA-256 for ``meta["models"]``; ``meta()`` — further top-level metadata.
"""

from __future__ import annotations

import os
from functools import lru_cache

import numpy as np

from mien.results.result import ColumnSpec


@lru_cache(maxsize=32)
def sha256(path: str) -> str:
    """SHA-256 hex digest of a file (cached per path for the process)."""
    from mien.io.hashing import sha256_file

    return sha256_file(path)


def file_info(name: str, *paths: str | os.PathLike) -> dict:
    """``meta["models"]`` entry: ``{"name", "file", "sha256"}`` for one file, ``{"name", "files": {basename:
    sha256}}`` for several."""
    paths = [str(p) for p in paths]
    if len(paths) == 1:
        return {"name": name, "file": os.path.basename(paths[0]), "sha256": sha256(paths[0])}
    return {"name": name, "files": {os.path.basename(p): sha256(p) for p in paths}}


class Head:
    """Base class of the heads (see the module docstring for the protocol).

    Attributes:
        name: key of the head's entry in ``meta["models"]`` (e.g. "expression", "au", "tokenizer").
        contract: :class:`~mien.models.registry.InputContract` of its crop, or None (no crop).
        requires: names of columns of other heads passed to ``__call__`` as keyword arguments.
        backend: "torch" or "onnxruntime" (what runs the network).
    """

    name: str = ""
    contract = None
    requires: tuple[str, ...] = ()
    backend: str = "torch"

    def columns(self) -> list[ColumnSpec]:
        """Per-row columns this head adds, in output order."""
        raise NotImplementedError

    def __call__(self, crops: np.ndarray, landmarks: np.ndarray, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        """Run on B faces (of any frames).

        Args:
            crops: uint8 (B, S, S, 3) RGB crops cut by ``contract`` (None for a head without a contract).
            landmarks: float32 (B, 478, 3) MediaPipe landmarks in source pixels.
            inputs: the ``requires`` columns of the same B faces.

        Returns:
            {column: array with B rows} for the columns it computes per batch (possibly none, see
            :meth:`finish`).
        """
        return {}

    def finish(self, columns: dict[str, np.ndarray], face_id: np.ndarray) -> dict[str, np.ndarray]:
        """Post-step over all N rows, sorted by (frame, face_id): ``columns`` holds every core and head column
        so far; returns the columns to add or replace (default: none)."""
        return {}

    def model_info(self) -> dict:
        """``meta["models"][name]`` entry (name, file(s), SHA-256)."""
        raise NotImplementedError

    def meta(self) -> dict:
        """Top-level metadata entries this head adds (e.g. ``{"au": {...}}``)."""
        return {}


def empty_columns(specs: list[ColumnSpec]) -> dict[str, np.ndarray]:
    """Zero-row arrays of the given columns (dtype and trailing shape from each spec; None sizes become 0)."""
    return {c.name: np.zeros((0, *(0 if s is None else s for s in c.shape)), c.dtype) for c in specs}


def column_meta(specs: list[ColumnSpec]) -> dict[str, dict]:
    """``meta["extra_columns"]`` entries ``{name: {"unit", "description"}}`` of the given columns."""
    return {c.name: {"unit": c.unit, "description": c.description} for c in specs}


def torch_available() -> bool:
    """Whether PyTorch and safetensors (the ``models`` extra) are importable."""
    import importlib.util

    return importlib.util.find_spec("torch") is not None and importlib.util.find_spec("safetensors") is not None
