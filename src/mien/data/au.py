"""Action Unit datasets, subject-disjoint splits and the AU LightningDataModule.

Two labelled sources:

1. **DISFA-style CSV** (FaceFlow's contract, DIGEST §2.5): columns ``AU1, AU2, …, filename`` (any order; extra
   columns such as ``subject``/``video`` are kept for grouping) plus a folder of face crops. Values are FACS
   intensities 0–5 (``label_kind="intensity"``, DISFA) or 0/1 (``"binary"``). Intensities are **normalised to
   [0, 1] by dividing by 5** (FaceFlow never normalised them, so every intensity ≥ 1 became the top ordinal class);
   occurrence = intensity ≥ ``occurrence_threshold`` (FACS units; default 1). Empty cells/NaN = not coded
   (masked).
2. **CK+ FACS labels** (``expressions/ckplus48_facs_labels.csv`` in mien's shared data): image paths relative to
   the CSV's folder, ``subject`` (``S010``), occurrence columns ``AU01…`` and raw ``facs_codes`` ``"AU:intensity"``
   with intensity 1–5 = A–E and 0 = "present, intensity not coded". Intensity target = code / 5 for codes 1–5,
   0 for absent AUs and NaN (masked) for code 0.

Each item is ``{"image": (3, S, S) float32 RGB [0, 1], "occ": (A,) float32 0/1, "occ_mask": (A,) float32 0/1,
"int": (A,) float32 [0, 1], "int_mask": (A,) float32, "index": int}``. Grayscale sources are replicated to RGB.

Sided AUs (columns ``AU12L``/``AU12R``, ``AU12_L``/``AU12_R``, ``L12``/``R12`` are recognised by
:func:`sided_groups`) can be merged into one column (max over sides) with ``merge_sides=True``.

Splits are subject-disjoint: :func:`subject_kfold` is GroupKFold-like (groups sorted by size, each to the fold with
the fewest samples), written with numpy.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "AUCsvDataset",
    "AUDataModule",
    "CKPlusAUDataset",
    "FACS_MAX",
    "ImageFolderDataset",
    "merge_sided",
    "normalize_intensity",
    "parse_facs_codes",
    "sided_groups",
    "subject_kfold",
]

FACS_MAX = 5.0
"""Largest FACS intensity (E); intensities are divided by it to give targets in [0, 1]."""
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def normalize_intensity(values, fmax: float = FACS_MAX) -> np.ndarray:
    """FACS intensities 0–``fmax`` -> float32 [0, 1] (NaN kept).

    Raises:
        ValueError: a finite value is outside [0, fmax].
    """
    v = np.asarray(values, np.float32)
    fin = v[np.isfinite(v)]
    if fin.size and (fin.min() < 0 or fin.max() > fmax):
        raise ValueError(f"intensities must lie in [0, {fmax}], got [{fin.min()}, {fin.max()}]")
    return v / np.float32(fmax)


def parse_facs_codes(codes: str) -> dict[int, int]:
    """``"9:4 17:2 25:0"`` -> ``{9: 4, 17: 2, 25: 0}`` (AU number -> CK+ intensity code, 0 = not coded).

    A bare ``"12"`` is read as intensity code 0. Raises ValueError on a malformed token.
    """
    out: dict[int, int] = {}
    for tok in str(codes or "").split():
        au, _, k = tok.partition(":")
        try:
            out[int(float(au))] = int(float(k)) if k else 0
        except ValueError as e:
            raise ValueError(f"bad FACS code {tok!r} in {codes!r}") from e
    return out


_SIDE_RE = [re.compile(r"^(?P<base>.+?)_?(?P<side>[LR])$"), re.compile(r"^(?P<side>[LR])(?P<base>\d+)$")]


def _au_number(name: str) -> int | None:
    m = re.search(r"(\d+)", name)
    return int(m.group(1)) if m else None


def sided_groups(names: Sequence[str]) -> tuple[list[str], list[list[int]]]:
    """Group left/right columns: ``["AU01", "AU12L", "AU12R"]`` -> ``(["AU01", "AU12"], [[0], [1, 2]])``.

    Recognised sided names: ``<base>L``/``<base>R``, ``<base>_L``/``<base>_R``, ``L<n>``/``R<n>`` (base ``AU<n>``,
    zero-padded to 2 digits). A side without its partner still forms a group of one.
    """
    merged: list[str] = []
    groups: list[list[int]] = []
    for i, n in enumerate(names):
        base = n
        for rx in _SIDE_RE:
            m = rx.match(n)
            if m and _au_number(m.group("base")) is not None:
                base = m.group("base")
                if base.isdigit():
                    base = f"AU{int(base):02d}"
                break
        if base in merged:
            groups[merged.index(base)].append(i)
        else:
            merged.append(base)
            groups.append([i])
    return merged, groups


def merge_sided(x, groups: Sequence[Sequence[int]]):
    """Max over each group of columns: (N, A_in) -> (N, len(groups)); numpy (NaN-aware) or torch."""
    if isinstance(x, torch.Tensor):
        return torch.stack([x[:, list(g)].amax(1) for g in groups], 1)
    x = np.asarray(x, np.float32)
    out = np.full((len(x), len(groups)), np.nan, np.float32)
    for j, g in enumerate(groups):
        col = x[:, list(g)]
        ok = np.isfinite(col).any(1)
        out[ok, j] = np.nanmax(col[ok], 1)
    return out


def subject_kfold(groups: Sequence, n_splits: int = 5, seed: int | None = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Subject-disjoint k-fold (GroupKFold-like): each subject is in exactly one validation fold.

    Subjects are (optionally, with ``seed``) shuffled, then sorted by sample count (largest first, stable) and each
    assigned to the fold with the fewest samples so far.

    Args:
        groups: (N,) subject id per sample.
        n_splits: k ≥ 2, at most the number of subjects.
        seed: shuffle seed for ties (None: no shuffle).

    Returns:
        k pairs ``(train_idx, val_idx)`` of int64 index arrays.

    Raises:
        ValueError: k < 2 or more folds than subjects.
    """
    g = np.asarray([str(x) for x in groups])
    subjects, inverse, counts = np.unique(g, return_inverse=True, return_counts=True)
    if n_splits < 2 or n_splits > len(subjects):
        raise ValueError(f"n_splits must be in [2, {len(subjects)}] (number of subjects), got {n_splits}")
    order = np.arange(len(subjects))
    if seed is not None:
        order = np.random.default_rng(seed).permutation(order)
    order = order[np.argsort(-counts[order], kind="stable")]
    fold_of = np.empty(len(subjects), np.int64)
    load = np.zeros(n_splits, np.int64)
    for s in order:
        f = int(np.argmin(load))
        fold_of[s] = f
        load[f] += counts[s]
    sample_fold = fold_of[inverse]
    idx = np.arange(len(g))
    return [(idx[sample_fold != f], idx[sample_fold == f]) for f in range(n_splits)]


def _read_rgb(path: str | os.PathLike) -> np.ndarray:
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(f"cannot read image {path}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def prepare_image(rgb: np.ndarray, size: int, grayscale: bool = False) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (3, size, size) float32 [0, 1] (area/linear resize; gray replicated if ``grayscale``)."""
    import cv2

    if grayscale:
        g = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        rgb = np.repeat(g[:, :, None], 3, axis=2)
    if rgb.shape[0] != size or rgb.shape[1] != size:
        interp = cv2.INTER_AREA if rgb.shape[0] > size else cv2.INTER_LINEAR
        rgb = cv2.resize(rgb, (size, size), interpolation=interp)
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float() / 255.0


class _LabelledAU(torch.utils.data.Dataset):
    """Common storage: paths (N,), subjects (N,), occ/int (N, A) float32 with NaN = not coded."""

    def __init__(self, paths, subjects, occ, inten, names, image_size: int, grayscale: bool, cache: bool):
        self.paths, self.subjects = list(paths), np.asarray(subjects)
        self.occ, self.inten, self.au_names = occ.astype(np.float32), inten.astype(np.float32), list(names)
        self.image_size, self.grayscale, self.cache = image_size, grayscale, cache
        self._cache: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.paths)

    def merge_sides(self) -> None:
        """Merge sided columns in place (max over sides; see :func:`sided_groups`)."""
        self.au_names, groups = sided_groups(self.au_names)
        self.occ, self.inten = merge_sided(self.occ, groups), merge_sided(self.inten, groups)

    def class_counts(self, indices=None) -> tuple[np.ndarray, np.ndarray]:
        """(pos_counts, neg_counts), int64 (A,) over coded labels of ``indices`` (default all)."""
        o = self.occ if indices is None else self.occ[np.asarray(indices)]
        return (o == 1).sum(0).astype(np.int64), (o == 0).sum(0).astype(np.int64)

    def __getitem__(self, i: int) -> dict:
        img = self._cache.get(i)
        if img is None:
            img = prepare_image(_read_rgb(self.paths[i]), self.image_size, self.grayscale)
            if self.cache:
                self._cache[i] = img
        o, t = self.occ[i], self.inten[i]
        return {"image": img, "occ": torch.from_numpy(np.nan_to_num(o)), "occ_mask": torch.from_numpy(np.isfinite(o).astype(np.float32)),
                "int": torch.from_numpy(np.nan_to_num(t)), "int_mask": torch.from_numpy(np.isfinite(t).astype(np.float32)),
                "index": i}


class CKPlusAUDataset(_LabelledAU):
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
        nums = [_au_number(n) for n in names]
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


class AUCsvDataset(_LabelledAU):
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


class ImageFolderDataset(torch.utils.data.Dataset):
    """Unlabelled face crops: every image under ``root`` (recursive, sorted), ``{"image": (3, S, S) [0, 1]}``.

    Raises:
        FileNotFoundError: no image found.
    """

    def __init__(self, root: str | os.PathLike, image_size: int = 64, grayscale: bool = False,
                 max_images: int | None = None):
        self.paths = sorted(p for p in Path(root).rglob("*") if p.suffix.lower() in IMAGE_EXTS)[:max_images]
        if not self.paths:
            raise FileNotFoundError(f"no images under {root}")
        self.image_size, self.grayscale = image_size, grayscale

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict:
        return {"image": prepare_image(_read_rgb(self.paths[i]), self.image_size, self.grayscale)}


def output_au_names(au_names: Sequence[str], merge_sides: bool = False) -> list[str]:
    """The model's output names for a data config: ``au_names`` or their side-merged names."""
    return sided_groups(au_names)[0] if merge_sides else list(au_names)


try:  # Lightning is an optional (training) dependency
    import lightning.pytorch as pl
except ImportError:  # pragma: no cover
    pl = None


if pl is not None:

    class AUDataModule(pl.LightningDataModule):
        """Labelled AU data split by subject into train/val (fold ``fold`` of ``n_folds``), plus optional
        unlabelled images for FixMatch/DeFixMatch.

        Args:
            dataset: ``"ckplus"`` (:class:`CKPlusAUDataset`) or ``"csv"`` (:class:`AUCsvDataset`).
            csv: labels CSV. crops_dir: image folder for ``"csv"`` (CK+: the CSV's folder by default).
            au_names: label columns (required: they define the model's outputs).
            merge_sides: merge left/right columns (the model's names then come from :func:`output_au_names`).
            image_size: S. grayscale: convert to gray (use True when training on gray CK+ and running on colour).
            n_folds, fold, seed: subject-disjoint split (:func:`subject_kfold`); ``fold`` is the validation fold.
            unlabeled_dir: folder of unlabelled face images (None: supervised only).
            max_unlabeled: cap on unlabelled images.
            batch_size: labelled batch; unlabeled_batch_size: unlabelled batch (default = batch_size).
            num_workers: DataLoader workers.
            label_kind, occurrence_threshold, subject_column: passed to :class:`AUCsvDataset`.
            crop_scale: how the crops were cut, as the side of a square around the landmark box (the value
                inference must use with :func:`mien.models.au.features.face_crops`; CK+48 ≈ 1.0, approximate).

        Training batches are the labelled dict, or ``{"labeled": dict, "unlabeled": {"image": …}}`` when
        ``unlabeled_dir`` is set (``CombinedLoader`` mode ``max_size_cycle``: an epoch lasts as long as the longer
        loader and the shorter one cycles; cap the unlabelled set with ``max_unlabeled``).
        """

        def __init__(self, dataset: str = "ckplus", csv: str = "", au_names: list[str] | None = None,
                     crops_dir: str | None = None, merge_sides: bool = False, image_size: int = 64,
                     grayscale: bool = False, n_folds: int = 5, fold: int = 0, seed: int = 0,
                     unlabeled_dir: str | None = None, max_unlabeled: int | None = None, batch_size: int = 32,
                     unlabeled_batch_size: int | None = None, num_workers: int = 0,
                     label_kind: str = "intensity", occurrence_threshold: float = 1.0,
                     subject_column: str | None = None, crop_scale: float = 1.1):
            super().__init__()
            self.save_hyperparameters()
            self.full = None
            self.train_set = self.val_set = self.unlabeled_set = None

        def _build(self):
            h = self.hparams
            if h.dataset == "ckplus":
                ds = CKPlusAUDataset(h.csv, h.au_names, h.image_size, root=h.crops_dir, grayscale=h.grayscale)
            elif h.dataset == "csv":
                if not h.crops_dir:
                    raise ValueError("dataset='csv' needs crops_dir")
                ds = AUCsvDataset(h.csv, h.crops_dir, h.au_names, h.image_size, h.label_kind, h.subject_column,
                                  h.occurrence_threshold, h.grayscale)
            else:
                raise ValueError(f"dataset must be 'ckplus' or 'csv', got {h.dataset!r}")
            if h.merge_sides:
                ds.merge_sides()
            return ds

        def setup(self, stage: str | None = None) -> None:
            if self.full is not None:
                return
            h = self.hparams
            self.full = self._build()
            tr, va = subject_kfold(self.full.subjects, h.n_folds, h.seed)[h.fold]
            self.train_idx, self.val_idx = tr, va
            self.train_set = torch.utils.data.Subset(self.full, tr.tolist())
            self.val_set = torch.utils.data.Subset(self.full, va.tolist())
            if h.unlabeled_dir:
                self.unlabeled_set = ImageFolderDataset(h.unlabeled_dir, h.image_size, h.grayscale, h.max_unlabeled)

        @property
        def au_names(self) -> list[str]:
            return output_au_names(self.hparams.au_names or [], self.hparams.merge_sides)

        def class_counts(self) -> tuple[np.ndarray, np.ndarray]:
            """(pos_counts, neg_counts) int64 (A,) of the training split (for the distribution-balanced loss)."""
            self.setup()
            return self.full.class_counts(self.train_idx)

        def _loader(self, ds, bs, shuffle):
            return torch.utils.data.DataLoader(ds, batch_size=bs, shuffle=shuffle, drop_last=shuffle and len(ds) > bs,
                                               num_workers=self.hparams.num_workers)

        def train_dataloader(self):
            lab = self._loader(self.train_set, self.hparams.batch_size, True)
            if self.unlabeled_set is None:
                return lab
            from lightning.pytorch.utilities import CombinedLoader

            ulb = self._loader(self.unlabeled_set, self.hparams.unlabeled_batch_size or self.hparams.batch_size, True)
            return CombinedLoader({"labeled": lab, "unlabeled": ulb}, mode="max_size_cycle")

        def val_dataloader(self):
            return self._loader(self.val_set, self.hparams.batch_size, False)

        def test_dataloader(self):
            return self.val_dataloader()
