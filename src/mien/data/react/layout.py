"""The official REACT 2023/2024 data layout: split lists, per-frame attribute CSVs, appropriateness matrices.

Layout (``root`` is the challenge's ``data`` folder, as its baseline ``dataset.py`` reads it)::

    root/{train,val,test}.csv                one dyad per row after a header row: index, speaker path, listener path
    root/neighbour_emotion_{split}.npy       appropriateness matrix (2M, 2M) of the split's M dyads (optional)
    root/{split}/Video_files/<path>/N.png    751 frames at 25 fps (or <path>.mp4)
    root/{split}/Audio_files/<path>.wav
    root/{split}/Emotion/<path>.csv          header row + 751 rows × 25 attributes (:data:`REACT_ATTRIBUTES`)
    root/{split}/3D_FV_files/<path>.npy      FaceVerse 3DMM coefficients (not read here)

Roles are mirrored as the official loaders do for val/test (and as its training does by random swaps): the
split's 2M directional items are ``speakers = col1 + col2``, ``listeners = col2 + col1``, so item ``i < M`` is
dyad i with col1 speaking and item ``i + M`` the same dyad with col2 speaking; row/column i of the
appropriateness matrix refers to item i (``A[k, j]``: the real listener reaction of item j is appropriate
for speaker k). Paths: ``data/{split}/`` of Song et al., "REACT2023", ACM MM 2023; the baseline repository
``reactmultimodalchallenge/baseline_react2023`` (``dataset.py``, ``evaluate.py``).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mien.errors import InputError
from mien.metrics.react import REACT_ATTRIBUTES

SPLITS = ("train", "val", "test")
CLIP_FRAMES = 751
"""Frames of an official clip (30 s at 25 fps, plus one)."""
FPS = 25.0


@dataclass(frozen=True)
class ReactClip:
    """One person's clip in the layout: ``path`` as listed in the split CSV and its files (may not exist)."""

    path: str
    video: Path
    audio: Path
    emotion: Path
    fv3d: Path

    def video_source(self) -> Path:
        """The clip's video: ``<path>.mp4`` when present, else the folder of numbered PNG frames."""
        mp4 = self.video.with_name(self.video.name + ".mp4")
        return mp4 if mp4.exists() else self.video


@dataclass(frozen=True)
class ReactDyad:
    """Row ``dyad`` of a split CSV: person ``a`` (column 1, the listed speaker) and ``b`` (column 2)."""

    dyad: int
    a: ReactClip
    b: ReactClip

    @property
    def session(self) -> str:
        return f"{self.a.path}|{self.b.path}"


@dataclass(frozen=True)
class ReactSplit:
    """A split of the layout: its dyads (CSV order) and the mirrored directional items.

    Attributes:
        root: the ``data`` folder. split: "train", "val" or "test". dyads: the M rows of ``{split}.csv``.
    """

    root: Path
    split: str
    dyads: tuple[ReactDyad, ...]

    def __len__(self) -> int:
        """2M: every dyad in both roles."""
        return 2 * len(self.dyads)

    def item(self, i: int) -> tuple[ReactClip, ReactClip]:
        """(speaker, listener) clips of mirrored item ``i`` in [0, 2M)."""
        m = len(self.dyads)
        if not 0 <= i < 2 * m:
            raise IndexError(f"item {i} out of range [0, {2 * m})")
        d = self.dyads[i % m]
        return (d.a, d.b) if i < m else (d.b, d.a)

    def appropriateness(self) -> np.ndarray:
        """The split's ``neighbour_emotion_{split}.npy`` as bool (2M, 2M) (:func:`read_appropriateness`)."""
        return read_appropriateness(self.root / f"neighbour_emotion_{self.split}.npy", len(self))


def _clip(root: Path, split: str, path: str) -> ReactClip:
    base = root / split
    return ReactClip(path, base / "Video_files" / path, base / "Audio_files" / f"{path}.wav",
                     base / "Emotion" / f"{path}.csv", base / "3D_FV_files" / f"{path}.npy")


def read_split(root: str | os.PathLike, split: str) -> ReactSplit:
    """Read ``{split}.csv`` of a REACT ``data`` folder and check that every clip has its ``Emotion`` CSV.

    Raises:
        InputError: the split CSV or a clip's emotion CSV is missing, a row has fewer than 3 columns, or the
            split lists no dyad.
        ValueError: ``split`` is not train, val or test.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    root = Path(root)
    listing = root / f"{split}.csv"
    if not listing.is_file():
        raise InputError(listing, f"missing: not a REACT data folder (expected {split}.csv and {split}/)")
    with open(listing, newline="") as f:
        rows = list(csv.reader(f))[1:]  # the official loader drops the header row
    dyads = []
    for n, row in enumerate(rows, start=2):
        if not any(c.strip() for c in row):
            continue
        if len(row) < 3:
            raise InputError(listing, f"line {n} has {len(row)} columns, expected index, speaker path, listener path")
        a, b = (_clip(root, split, row[k].strip()) for k in (1, 2))
        for c in (a, b):
            if not c.emotion.is_file():
                raise InputError(c.emotion, "missing emotion CSV (listed in " f"{listing.name} line {n})")
        dyads.append(ReactDyad(len(dyads), a, b))
    if not dyads:
        raise InputError(listing, "lists no dyad")
    return ReactSplit(root, split, tuple(dyads))


def read_emotion_csv(path: str | os.PathLike) -> np.ndarray:
    """One official ``Emotion/*.csv``: a header row, then one row per frame of the 25 attributes.

    Returns:
        float32 (T, 25), columns :data:`REACT_ATTRIBUTES` (AU occurrences, valence/arousal, expression
        probabilities).

    Raises:
        InputError: missing or empty file, a row whose width is not 25, or a value that is not a number.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "missing emotion CSV")
    with open(path, newline="") as f:
        rows = list(csv.reader(f))[1:]
    rows = [r for r in rows if r]
    if not rows:
        raise InputError(path, "no frame rows after the header")
    widths = {len(r) for r in rows}
    if widths != {len(REACT_ATTRIBUTES)}:
        raise InputError(path, f"rows have {sorted(widths)} columns, expected {len(REACT_ATTRIBUTES)} "
                               "(15 AUs, valence, arousal, 8 expression probabilities)")
    try:
        return np.asarray(rows, dtype=np.float32)
    except ValueError as e:
        raise InputError(path, f"non-numeric value ({e})") from None


def read_appropriateness(path: str | os.PathLike, n: int | None = None) -> np.ndarray:
    """An appropriateness (neighbour) matrix file: ``.npy`` of any numeric/bool dtype, nonzero = appropriate.

    Args:
        path: the ``.npy`` file. n: expected size (2M for a split of M dyads), checked when given.

    Returns:
        bool (n, n).

    Raises:
        InputError: missing/unreadable file, not square, or not ``n`` × ``n``.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "missing appropriateness matrix")
    try:
        a = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise InputError(path, f"not a readable .npy file ({e})") from None
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise InputError(path, f"appropriateness matrix must be square (N, N), got {a.shape}")
    if n is not None and a.shape[0] != n:
        raise InputError(path, f"appropriateness matrix is {a.shape[0]}×{a.shape[1]}, expected {n}×{n} "
                               "(2 × the split's dyads, both roles)")
    return a.astype(bool)
