"""Labelled AU image datasets: CK+ FACS labels and DISFA-style CSVs (FaceFlow's contract).

* **DISFA-style CSV** (:class:`AUCsvDataset`): columns ``AU1, AU2, …, filename`` (any order; extra columns such
  as ``subject``/``video`` are kept for grouping) plus a folder of face crops. Values are FACS intensities 0–5
  (``label_kind="intensity"``, DISFA) or 0/1 (``"binary"``). Intensities are **normalised to [0, 1] by dividing
  by 5** (FaceFlow never normalised them, so every intensity ≥ 1 became the top ordinal class); occurrence =
  intensity ≥ ``occurrence_threshold`` (FACS units; default 1). Empty cells/NaN = not coded (masked).
* **CK+ FACS labels** (:class:`CKPlusAUDataset`, ``expressions/ckplus48_facs_labels.csv`` in mien's shared data):
  image paths relative to the CSV's folder, ``subject`` (``S010``), occurrence columns ``AU01…`` and raw
  ``facs_codes`` ``"AU:intensity"`` with intensity 1–5 = A–E and 0 = "present, intensity not coded". Intensity
  target = code / 5 for codes 1–5, 0 for absent AUs and NaN (masked) for code 0.

Each item is ``{"image": (3, S, S) float32 RGB [0, 1], "occ": (A,) float32 0/1, "occ_mask": (A,) float32 0/1,
"int": (A,) float32 [0, 1], "int_mask": (A,) float32, "index": int}``. Grayscale sources are replicated to RGB.
Sided AUs can be merged into one column (max over sides) with :meth:`LabelledAUDataset.merge_sides`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from mien.data.au.images import prepare_image, read_rgb
from mien.data.labels.facs import (
    FACS_MAX,
    au_number,
    merge_sided,
    normalize_intensity,
    parse_facs_codes,
    sided_groups,
)

__all__ = ["AUCsvDataset", "CKPlusAUDataset", "LabelledAUDataset", "label_item"]


def label_item(occ: np.ndarray, inten: np.ndarray) -> dict:
    """Label part of an item from (A,) float32 occurrence / intensity rows with NaN = not coded: ``occ``,
    ``occ_mask``, ``int``, ``int_mask`` as (A,) float32 tensors (masks 1 = coded)."""
    return {"occ": torch.from_numpy(np.nan_to_num(occ)), "occ_mask": torch.from_numpy(np.isfinite(occ).astype(np.float32)),
            "int": torch.from_numpy(np.nan_to_num(inten)),
            "int_mask": torch.from_numpy(np.isfinite(inten).astype(np.float32))}


class LabelledAUDataset(torch.utils.data.Dataset):
    """Common storage of labelled AU images: ``paths`` (N,), ``subjects`` (N,) str, ``occ``/``inten`` (N, A)
    float32 with NaN = not coded, ``au_names`` (A,), and how images are read (``image_size`` S, ``grayscale``,
    ``cache`` decoded images in memory)."""

    def __init__(self, paths, subjects, occ, inten, names, image_size: int, grayscale: bool, cache: bool):
        self.paths, self.subjects = list(paths), np.asarray(subjects)
        self.occ, self.inten, self.au_names = occ.astype(np.float32), inten.astype(np.float32), list(names)
        self.image_size, self.grayscale, self.cache = image_size, grayscale, cache
        self._cache: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.paths)

    def merge_sides(self) -> None:
        """Merge sided columns in place (max over sides; see :func:`mien.data.labels.facs.sided_groups`)."""
        self.au_names, groups = sided_groups(self.au_names)
        self.occ, self.inten = merge_sided(self.occ, groups), merge_sided(self.inten, groups)

    def class_counts(self, indices=None) -> tuple[np.ndarray, np.ndarray]:
        """(pos_counts, neg_counts), int64 (A,) over coded labels of ``indices`` (default all)."""
        o = self.occ if indices is None else self.occ[np.asarray(indices)]
        return (o == 1).sum(0).astype(np.int64), (o == 0).sum(0).astype(np.int64)

    def image(self, i: int) -> torch.Tensor:
        """Image ``i`` as (3, S, S) float32 RGB [0, 1] (cached when ``cache``)."""
        img = self._cache.get(i)
        if img is None:
            img = prepare_image(read_rgb(self.paths[i]), self.image_size, self.grayscale)
            if self.cache:
                self._cache[i] = img
        return img

    def __getitem__(self, i: int) -> dict:
        return {"image": self.image(i), **label_item(self.occ[i], self.inten[i]), "index": i}


class CKPlusAUDataset(LabelledAUDataset):
    """CK+ FACS labels (``ckplus48_facs_labels.csv``) as an AU dataset.

    Args:
        csv: path of the labels CSV; ``image`` paths are relative to its folder (``root`` overrides).
        au_names: columns to use (e.g. ``["AU01", "AU02", …]``); None = every ``AU..`` column.
        image_size: S (48×48 CK+ crops are upsampled).
        root: image folder (default: the CSV's folder).
        grayscale: force gray (CK+ already is).
        cache: keep decoded images in memory.

    Raises:
        FileNotFoundError: the CSV is missing. KeyError: an AU column is missing.
    """

    def __init__(self, csv: str | os.PathLike, au_names: Sequence[str] | None = None, image_size: int = 64,
                 root: str | os.PathLike | None = None, grayscale: bool = False, cache: bool = True):
        import pandas as pd

        df = pd.read_csv(csv)
        names = list(au_names) if au_names else [c for c in df.columns if re.fullmatch(r"AU\d+", c)]
        missing = [n for n in names if n not in df.columns]
        if missing:
            raise KeyError(f"{csv}: no column(s) {missing}")
        occ = df[names].to_numpy(np.float32)
        inten = np.zeros_like(occ)
        nums = [au_number(n) for n in names]
        for r, codes in enumerate(df["facs_codes"].fillna("")):
            c = parse_facs_codes(codes)
            for j, au in enumerate(nums):
                if au in c:
                    inten[r, j] = c[au] / FACS_MAX if c[au] > 0 else np.nan
        inten[np.isnan(occ)] = np.nan
        base = Path(root) if root is not None else Path(csv).parent
        super().__init__([base / p for p in df["image"]], df["subject"].astype(str), occ, inten, names,
                         image_size, grayscale, cache)
        self.frame = df


class AUCsvDataset(LabelledAUDataset):
    """FaceFlow/DISFA-style CSV (``AU1, …, filename``) + crops folder.

    Args:
        csv: labels CSV.
        crops_dir: folder that ``filename`` is relative to.
        au_names: label columns (None: every column matching ``AU\\d+[LR]?``).
        label_kind: ``"intensity"`` (FACS 0–5, normalised by /5; occurrence = value ≥ ``occurrence_threshold``)
            or ``"binary"`` (0/1 occurrence, no intensity target).
        subject_column: column with the subject id (DISFA: ``video``/``subject``); None = first of
            ``subject``, ``video``, ``person`` present, else the filename's leading token up to ``_``.
        occurrence_threshold: FACS intensity counted as "present" (default 1; DISFA papers often use 2).

    Raises:
        KeyError: missing columns. ValueError: intensities outside 0–5.
    """

    def __init__(self, csv: str | os.PathLike, crops_dir: str | os.PathLike, au_names: Sequence[str] | None = None,
                 image_size: int = 112, label_kind: str = "intensity", subject_column: str | None = None,
                 occurrence_threshold: float = 1.0, grayscale: bool = False, cache: bool = False):
        import pandas as pd

        df = pd.read_csv(csv)
        names = list(au_names) if au_names else [c for c in df.columns if re.fullmatch(r"AU\d+(_?[LR])?", c)]
        missing = [n for n in names + ["filename"] if n not in df.columns]
        if missing:
            raise KeyError(f"{csv}: no column(s) {missing}")
        raw = df[names].to_numpy(np.float32)
        if label_kind == "intensity":
            inten = normalize_intensity(raw)
            occ = np.where(np.isfinite(raw), (raw >= occurrence_threshold).astype(np.float32), np.nan)
        elif label_kind == "binary":
            occ = raw
            inten = np.full_like(raw, np.nan)
        else:
            raise ValueError(f"label_kind must be 'intensity' or 'binary', got {label_kind!r}")
        if subject_column is None:
            subject_column = next((c for c in ("subject", "video", "person") if c in df.columns), None)
        subjects = df[subject_column].astype(str) if subject_column else \
            df["filename"].astype(str).map(lambda f: Path(f).name.split("_")[0])
        super().__init__([Path(crops_dir) / f for f in df["filename"]], subjects, occ.astype(np.float32), inten,
                         names, image_size, grayscale, cache)
