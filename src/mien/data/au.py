"""Action Unit datasets, subject-disjoint splits and the AU LightningDataModule.

Three labelled sources:

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
3. **mien shards with AU labels** (:class:`ShardAUDataset`, ``dataset="shards"``): a ``mien prepare --au-labels``
   dataset, whose clips carry ``au.npy`` (T, A) FACS values per clip frame. Every labelled clip frame is one
   image: the aligned crop re-cut around its landmark box at ``crop_scale`` (the AU model's input contract;
   ``shard_crop="aligned"`` keeps the whole aligned crop) and resized to S. Subjects are the datasets' subject
   ids. The labelled frames are decoded once and held in memory (uint8; fine for modest labelled sets, see
   ``frame_step``).

Unlabelled frames for FixMatch / DeFixMatch: a folder of face images (:class:`ImageFolderDataset`,
``unlabeled_dir``) or a ``mien prepare`` dataset, labelled or not (:class:`ShardFrameDataset`,
``unlabeled_shards``), streamed clip by clip through a shuffle buffer; when it is the labelled dataset itself,
the validation subjects are left out of it.

Each item is ``{"image": (3, S, S) float32 RGB [0, 1], "occ": (A,) float32 0/1, "occ_mask": (A,) float32 0/1,
"int": (A,) float32 [0, 1], "int_mask": (A,) float32, "index": int}``. Grayscale sources are replicated to RGB.

Feature input (``AUDataModule(input="features")``, :class:`AUFeatureDataset`): each labelled image is converted
once into the default AU model's 1660 features (:func:`au_image_features` → :func:`mien.models.au.tight_crop_features`:
face-api expression embedding ‖ canonical-aligned MediaPipe mesh) and items carry ``"features": (1660,) float32``
instead of ``"image"``; the features of the mirrored image can be added as extra training rows. The optional
``.npz`` cache holds per-image derivatives of the source images: keep it outside the repository (CK+'s licence
forbids redistribution; the code refuses paths inside mien's package or repository).

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

from mien.data.facs import au_column_name

__all__ = [
    "AUCsvDataset",
    "AUDataModule",
    "AUFeatureDataset",
    "CKPlusAUDataset",
    "FACS_MAX",
    "ImageFolderDataset",
    "ShardAUDataset",
    "ShardFrameDataset",
    "au_image_features",
    "flip_permutation",
    "merge_sided",
    "normalize_intensity",
    "parse_facs_codes",
    "sided_groups",
    "subject_kfold",
]

FACS_MAX = 5.0
"""Largest FACS intensity (E); intensities are divided by it to give targets in [0, 1]."""
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
SHARD_CROPS = ("landmarks", "aligned")
"""How AU images are cut from ``mien prepare`` clips (:func:`shard_face_crops`)."""


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


def flip_permutation(names: Sequence[str]) -> list[int] | None:
    """Column permutation that swaps left/right AU columns (``AU12L`` <-> ``AU12R``) under a horizontal image
    flip; None when no column is sided."""
    perm = list(range(len(names)))
    for g in sided_groups(names)[1]:
        if len(g) == 2:
            perm[g[0]], perm[g[1]] = g[1], g[0]
    return None if perm == list(range(len(names))) else perm


FEATURE_CACHE_VERSION = "mien-au-features-v1"
"""Version tag of :func:`au_image_features` caches (changes when the feature definition changes)."""


def _check_cache_location(path: Path) -> None:
    pkg = Path(__file__).resolve().parents[1]
    roots = [pkg] + ([pkg.parents[1]] if (pkg.parents[1] / "pyproject.toml").is_file() else [])
    p = path.resolve()
    for r in roots:
        if p == r or r in p.parents:
            raise ValueError(f"feature cache {path} is inside {r}: per-image features of licensed face data "
                             "must not be written into the mien package or repository; use a path outside it")


def au_image_features(paths: Sequence[str | os.PathLike], cache: str | os.PathLike | None = None,
                      mirror: bool = True, verbose: bool = False) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Default AU-model features (:func:`mien.models.au.tight_crop_features`) of face-crop image files.

    Each image is read as RGB; MediaPipe landmarks come from the upscaled, black-padded image (for tight crops
    such as CK+48), then the face-api embedding of the 1.1× landmark-box crop ‖ the canonical-aligned mesh
    (D = 1660), and with ``mirror`` the same for the horizontally flipped image.

    Args:
        paths: N image files.
        cache: optional ``.npz`` file (outside the mien repository — these are per-image derivatives of the
            images, which licences such as CK+'s forbid redistributing). Rows of files already in it are
            reused (keyed by the resolved path); missing ones are computed and the file is rewritten
            atomically with the union.
        mirror: also return the mirrored features.
        verbose: print progress.

    Returns:
        ``(features, mirrored, face_found)``: float32 (N, 1660), float32 (N, 1660) or None, bool (N,);
        rows without a face are zeros with ``face_found`` False.

    Raises:
        ValueError: ``cache`` lies inside the mien package or repository. FileNotFoundError: unreadable image.
    """
    import time

    keys = [str(Path(p).resolve()) for p in paths]
    have: dict[str, int] = {}
    store = None
    if cache is not None:
        cache = Path(cache)
        _check_cache_location(cache)
        if cache.is_file():
            z = np.load(cache, allow_pickle=False)
            if str(z["version"]) == FEATURE_CACHE_VERSION and (not mirror or "mirrored" in z.files):
                store = {k: z[k] for k in z.files}
                have = {str(k): i for i, k in enumerate(store["paths"])}
    todo = [i for i, k in enumerate(keys) if k not in have]
    from mien.models.au import FEATURE_DIM

    feats = np.zeros((len(keys), FEATURE_DIM), np.float32)
    flipped = np.zeros((len(keys), FEATURE_DIM), np.float32)
    ok = np.zeros(len(keys), bool)
    for i, k in enumerate(keys):
        if k in have:
            feats[i], ok[i] = store["features"][have[k]], store["face_found"][have[k]]
            if mirror:
                flipped[i] = store["mirrored"][have[k]]
    if todo:
        from mien.models.au import tight_crop_features

        t0 = time.time()
        # building the nets draws their random init from the global RNG: fork it, so that a run gives the same
        # result whether or not the features came from the cache
        with torch.random.fork_rng(devices=[]):
            f, fl, o = tight_crop_features([_read_rgb(paths[i]) for i in todo], mirror=True)
        feats[todo], flipped[todo], ok[todo] = f, fl, o
        if verbose:
            print(f"AU features: {int(o.sum())}/{len(o)} new frames with a face, {time.time() - t0:.1f} s", flush=True)
        if cache is not None:
            from mien.io.atomic import atomic_output

            if store is None:
                store = {"paths": np.array([], str), "features": np.zeros((0, FEATURE_DIM), np.float32),
                         "mirrored": np.zeros((0, FEATURE_DIM), np.float32), "face_found": np.zeros(0, bool)}
            new = {"paths": np.array([keys[i] for i in todo]), "features": f, "mirrored": fl, "face_found": o}
            out = {k: np.concatenate([store[k], new[k]]) for k in new}
            with atomic_output(cache) as tmp:
                with open(tmp, "wb") as fh:
                    np.savez(fh, version=np.array(FEATURE_CACHE_VERSION), **out)
    return feats, (flipped if mirror else None), ok


class AUFeatureDataset(_LabelledAU):
    """A labelled AU dataset turned into per-face feature vectors for :class:`mien.models.au.head.AUHead`.

    The images of ``source`` (:class:`CKPlusAUDataset` / :class:`AUCsvDataset`) are converted once by
    :func:`au_image_features` (optionally cached); frames where no face is found are dropped (``source_index``
    says which source rows were kept). Labels, subjects and ``merge_sides`` behave as in the source.

    Items: ``{"features": (D,) float32, "occ": (A,) float32 0/1, "occ_mask": (A,) float32, "int": (A,) float32
    [0, 1], "int_mask": (A,) float32, "index": int}`` with D = 1660. :meth:`mirrored` gives the same rows with
    the features of the flipped images and left/right label columns swapped (:func:`flip_permutation`).

    Args:
        source: the labelled image dataset.
        cache: ``.npz`` feature cache (see :func:`au_image_features`; keep it outside the repository).
        mirror: compute mirrored features too (needed by :meth:`mirrored`).
        verbose: print the feature-extraction time.

    Attributes:
        features: float32 tensor (N, D); features_mirrored: (N, D) or None; frame: the source's label table
        rows that were kept (CK+ only, else None).
    """

    def __init__(self, source: _LabelledAU, cache: str | os.PathLike | None = None, mirror: bool = True,
                 verbose: bool = False):
        feats, flipped, ok = au_image_features(source.paths, cache, mirror, verbose)
        keep = np.nonzero(ok)[0]
        super().__init__([source.paths[i] for i in keep], source.subjects[keep], source.occ[keep],
                         source.inten[keep], source.au_names, source.image_size, source.grayscale, False)
        self.source_index = keep
        self.features = torch.from_numpy(np.ascontiguousarray(feats[keep]))
        self.features_mirrored = None if flipped is None else torch.from_numpy(np.ascontiguousarray(flipped[keep]))
        frame = getattr(source, "frame", None)
        self.frame = None if frame is None else frame.iloc[keep].reset_index(drop=True)
        self._labels()

    @property
    def feature_dim(self) -> int:
        """D, the feature width."""
        return int(self.features.shape[1])

    def _labels(self) -> None:
        o, t = self.occ, self.inten
        self._occ, self._occ_mask = torch.from_numpy(np.nan_to_num(o)), torch.from_numpy(np.isfinite(o).astype(np.float32))
        self._int, self._int_mask = torch.from_numpy(np.nan_to_num(t)), torch.from_numpy(np.isfinite(t).astype(np.float32))
        self._perm = flip_permutation(self.au_names)

    def merge_sides(self) -> None:
        super().merge_sides()
        self._labels()

    def item(self, i: int, mirrored: bool = False) -> dict:
        """Row ``i`` as a training item, from the mirrored image when ``mirrored``."""
        if not mirrored:
            return {"features": self.features[i], "occ": self._occ[i], "occ_mask": self._occ_mask[i],
                    "int": self._int[i], "int_mask": self._int_mask[i], "index": i}
        if self.features_mirrored is None:
            raise ValueError("this AUFeatureDataset was built with mirror=False")
        perm = self._perm
        out = {"features": self.features_mirrored[i], "occ": self._occ[i], "occ_mask": self._occ_mask[i],
               "int": self._int[i], "int_mask": self._int_mask[i], "index": i}
        if perm is not None:
            out.update({k: out[k][perm] for k in ("occ", "occ_mask", "int", "int_mask")})
        return out

    def __getitem__(self, i: int) -> dict:
        return self.item(i)

    def mirrored(self, indices: Sequence[int] | None = None) -> torch.utils.data.Dataset:
        """The rows ``indices`` (default all) as mirrored items (a Dataset of ``len(indices)``)."""
        return _MirroredRows(self, np.arange(len(self)) if indices is None else np.asarray(indices))


class _MirroredRows(torch.utils.data.Dataset):
    def __init__(self, ds: AUFeatureDataset, indices: np.ndarray):
        self.ds, self.indices = ds, [int(i) for i in indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, j: int) -> dict:
        return self.ds.item(self.indices[j], mirrored=True)


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


def shard_face_crops(video: np.ndarray, landmarks: np.ndarray, size: int, crop: str = "landmarks",
                     crop_scale: float = 1.1) -> np.ndarray:
    """AU training crops from the frames of a ``mien prepare`` clip.

    Args:
        video: (T, S, S, 3) uint8 RGB aligned face crops (the ``mp4`` member).
        landmarks: (T, 478, 3) float32 landmarks in crop pixels (``landmarks.npy``).
        size: output side (the AU image size).
        crop: ``"landmarks"`` — square of ``crop_scale`` × the landmark box's longer side (the AU model's input
            contract, :func:`mien.models.au.features.face_crops`, as used at inference); ``"aligned"`` — the
            whole aligned crop resized (FFHQ-style framing, about 1.8× the landmark box: only for models that
            are run on ``mien prepare`` crops). Frames with non-finite landmarks fall back to ``"aligned"``.
        crop_scale: see ``crop``.

    Returns:
        (T, size, size, 3) uint8 RGB.

    Raises:
        ValueError: unknown ``crop``.
    """
    import cv2

    if crop not in SHARD_CROPS:
        raise ValueError(f"shard crop must be one of {', '.join(SHARD_CROPS)}, got {crop!r}")
    video = np.asarray(video)
    out = np.zeros((len(video), size, size, 3), np.uint8)
    ok = np.zeros(len(video), bool)
    if crop == "landmarks" and len(video):
        from mien.models.au.features import face_crops

        lm = np.asarray(landmarks, np.float32)[..., :2]
        ok = np.isfinite(lm).all((1, 2))
        if ok.any():
            boxes = np.concatenate([lm[ok].min(1), lm[ok].max(1)], -1)
            out[ok] = face_crops(list(video[ok]), boxes, scale=crop_scale, size=size)
    for i in np.nonzero(~ok)[0]:
        im = video[i]
        interp = cv2.INTER_AREA if im.shape[0] > size else cv2.INTER_LINEAR
        out[i] = im if im.shape[0] == size and im.shape[1] == size else cv2.resize(im, (size, size),
                                                                                     interpolation=interp)
    return out


def _facs_name(name: str) -> str:
    """``AU1``/``au01``/``AU12_L`` → ``AU01``/``AU12L`` (the names ``mien prepare --au-labels`` writes)."""
    return au_column_name(name) or name


def _shard_urls_of(info, keep_rows=None) -> list[str]:
    """Shard URLs of a dataset (manifest order), only those holding a row of ``keep_rows`` (bool mask) if given."""
    from mien.data import store

    fs, path = store.get_fs(info.root)
    names = [s["name"] for s in info.manifest["shards"]]
    if keep_rows is not None:
        wanted = set(info.index.loc[keep_rows, "shard"])
        names = [n for n in names if n in wanted]
    urls = []
    for n in names:
        p = store.join(path, "shards", n)
        urls.append(p if store.is_local(fs) else fs.unstrip_protocol(p))
    return urls


class ShardAUDataset(_LabelledAU):
    """Labelled AU frames from a ``mien prepare --au-labels`` dataset (shards with ``au.npy``).

    Every frame of every clip with ``au.npy`` (every ``frame_step``-th frame) with at least one coded AU of
    ``au_names`` becomes one training image: the clip's aligned crop cut as ``crop`` says
    (:func:`shard_face_crops`) at ``image_size``. Labels: FACS values of ``au.npy`` as in :class:`AUCsvDataset`
    (``label_kind="intensity"``: intensity = value / 5, occurrence = value ≥ ``occurrence_threshold``;
    ``"binary"``: 0/1 occurrence, no intensity); NaN = not coded (masked). Subject = the sample's ``subject_id``
    (as a string), so :func:`subject_kfold` splits by the subjects of ``mien prepare`` (``--subjects``).

    The frames are decoded once, at construction, and kept **in memory** as uint8 (N × S² × 3 bytes: 100k frames
    at S = 64 ≈ 1.2 GB) — meant for labelled sets of modest size; raise ``frame_step`` (neighbouring frames at
    25 fps are near-duplicates) or ``max_frames`` for larger ones. Unlabelled frames stream instead
    (:class:`ShardFrameDataset`).

    Items are those of :class:`CKPlusAUDataset` (``image`` (3, S, S) float32 RGB [0, 1], ``occ``, ``occ_mask``,
    ``int`` [0, 1], ``int_mask`` (A,) float32, ``index``).

    Args:
        root: dataset root (local folder or fsspec URL).
        au_names: label columns (``AU1`` and ``AU01`` both name ``AU01``); None = the dataset's ``au_names``. The
            dataset's names are kept as given here.
        image_size: S. grayscale: convert to gray.
        label_kind, occurrence_threshold: as in :class:`AUCsvDataset`.
        crop, crop_scale: see :func:`shard_face_crops`.
        frame_step: keep every n-th clip frame.
        max_frames: stop after this many frames (None: all).

    Attributes:
        images: uint8 (N, S, S, 3) RGB; keys: N ``"<sample key>/<clip frame>"`` (also ``paths``);
        subjects: (N,) str; times: float64 (N,) source presentation time (s) of each frame.

    Raises:
        InputError: ``root`` is not a prepared dataset. ValueError: it has no AU labels, no labelled frame, or
        ``"binary"`` labels are not 0/1. KeyError: an AU of ``au_names`` is not in the dataset.
    """

    def __init__(self, root: str, au_names: Sequence[str] | None = None, image_size: int = 64,
                 label_kind: str = "intensity", occurrence_threshold: float = 1.0, crop: str = "landmarks",
                 crop_scale: float = 1.1, frame_step: int = 1, grayscale: bool = False,
                 max_frames: int | None = None):
        from mien.data.reader import iter_samples, open_dataset

        if label_kind not in ("intensity", "binary"):
            raise ValueError(f"label_kind must be 'intensity' or 'binary', got {label_kind!r}")
        if crop not in SHARD_CROPS:
            raise ValueError(f"shard crop must be one of {', '.join(SHARD_CROPS)}, got {crop!r}")
        info = open_dataset(str(root))
        have = list(info.manifest.get("au_names") or [])
        if not have:
            raise ValueError(f"{root}: no AU labels in this dataset (prepare it with `mien prepare --au-labels`)")
        names = list(au_names) if au_names else list(have)
        missing = [n for n in names if _facs_name(n) not in have]
        if missing:
            raise KeyError(f"{root}: no AU label(s) {missing} (the dataset has {', '.join(have)})")
        idx = info.index
        urls = _shard_urls_of(info, idx["has_au"].astype(bool) if "has_au" in idx.columns else None)
        step = max(1, int(frame_step))
        images, raw, subjects, keys, times = [], [], [], [], []
        n = 0
        for s in iter_samples(urls, audio=False):
            if max_frames is not None and n >= max_frames:
                break
            if "au.npy" not in s:
                continue
            meta = s["json"]
            cols = [list(meta.get("au_names") or have).index(_facs_name(x)) for x in names]
            au = np.asarray(s["au.npy"], np.float32)[:, cols]
            k = np.arange(0, len(au), step)
            k = k[np.isfinite(au[k]).any(1)]
            if max_frames is not None:
                k = k[:max_frames - n]
            if not len(k):
                continue
            images.append(shard_face_crops(s["mp4"][k], s["landmarks.npy"][k], image_size, crop, crop_scale))
            raw.append(au[k])
            subjects += [str(meta["subject_id"])] * len(k)
            keys += [f"{s['__key__']}/{j}" for j in k]
            times.append(np.asarray(s["times.npy"], np.float64)[k, 1])
            n += len(k)
        if not n:
            raise ValueError(f"{root}: no frame with a coded AU among {names}")
        raw = np.concatenate(raw)
        if label_kind == "intensity":
            inten = normalize_intensity(raw)
            occ = np.where(np.isfinite(raw), (raw >= occurrence_threshold).astype(np.float32), np.nan)
        else:
            fin = raw[np.isfinite(raw)]
            if fin.size and not np.isin(fin, (0.0, 1.0)).all():
                raise ValueError(f"{root}: label_kind='binary' needs 0/1 AU labels, found values in "
                                 f"[{fin.min()}, {fin.max()}] (use label_kind='intensity')")
            occ, inten = raw, np.full_like(raw, np.nan)
        super().__init__(keys, subjects, occ.astype(np.float32), inten, names, image_size, grayscale, False)
        self.images = np.concatenate(images)
        self.keys = self.paths
        self.times = np.concatenate(times)
        self.root = str(root)

    def __getitem__(self, i: int) -> dict:
        o, t = self.occ[i], self.inten[i]
        return {"image": prepare_image(self.images[i], self.image_size, self.grayscale),
                "occ": torch.from_numpy(np.nan_to_num(o)), "occ_mask": torch.from_numpy(np.isfinite(o).astype(np.float32)),
                "int": torch.from_numpy(np.nan_to_num(t)), "int_mask": torch.from_numpy(np.isfinite(t).astype(np.float32)),
                "index": i}


class ShardFrameDataset(torch.utils.data.IterableDataset):
    """Unlabelled face frames streamed from a ``mien prepare`` dataset, for FixMatch / DeFixMatch.

    Yields ``{"image": (3, S, S) float32 RGB [0, 1]}`` — every ``frame_step``-th frame of every clip (labels, if
    any, are ignored), cut as ``crop`` says (:func:`shard_face_crops`). Shards are read one clip at a time
    (WebDataset, fsspec: any root URL), in an order reshuffled every epoch, split across DataLoader workers and
    ``torch.distributed`` ranks (each frame read once per epoch overall), and frames pass through a shuffle
    buffer of ``buffer`` frames. ``len()`` is the number of frames one epoch yields on this rank (from the index;
    with ``max_frames`` each of the W workers stops after ⌈max_frames / W⌉, so the cap is approximate).

    Args:
        root: dataset root (local folder or fsspec URL).
        image_size: S. grayscale: convert to gray. crop, crop_scale: see :func:`shard_face_crops`.
        frame_step: keep every n-th clip frame.
        max_frames: frames per epoch (None: all).
        exclude_subjects: subject ids (as strings) whose clips are skipped (the validation subjects when the
            labelled and unlabelled sets come from the same dataset).
        shuffle: shuffle shards and frames. buffer: shuffle buffer size (frames). seed: shuffling seed.

    Raises:
        InputError: ``root`` is not a prepared dataset. ValueError: no frame left.
    """

    def __init__(self, root: str, image_size: int = 64, crop: str = "landmarks", crop_scale: float = 1.1,
                 frame_step: int = 1, grayscale: bool = False, max_frames: int | None = None,
                 exclude_subjects: Sequence[str] | None = None, shuffle: bool = True, buffer: int = 512,
                 seed: int = 0):
        from mien.data.reader import open_dataset

        if crop not in SHARD_CROPS:
            raise ValueError(f"shard crop must be one of {', '.join(SHARD_CROPS)}, got {crop!r}")
        info = open_dataset(str(root))
        self.exclude = {str(s) for s in (exclude_subjects or ())}
        idx = info.index
        keep = ~idx["subject_id"].astype(str).isin(self.exclude)
        self.urls = _shard_urls_of(info, keep)
        self.step = max(1, int(frame_step))
        self.total = int(sum(-(-int(f) // self.step) for f in idx.loc[keep, "frames"]))
        if max_frames is not None:
            self.total = min(self.total, int(max_frames))
        if not self.total:
            raise ValueError(f"{root}: no unlabelled frames (every subject excluded?)")
        self.root, self.image_size, self.crop, self.crop_scale = str(root), image_size, crop, crop_scale
        self.grayscale, self.max_frames, self.shuffle, self.buffer, self.seed = \
            grayscale, max_frames, shuffle, max(1, int(buffer)), seed
        self._epoch = 0

    @staticmethod
    def _node() -> tuple[int, int] | None:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            return dist.get_rank(), dist.get_world_size()
        return None

    def __len__(self) -> int:
        node = self._node()
        return -(-self.total // node[1]) if node else self.total

    def _frames(self, node, worker, rng):
        from mien.data.reader import iter_samples

        urls = list(self.urls)
        if self.shuffle:
            rng.shuffle(urls)  # the same permutation in every worker (same base seed): a split of all shards
        for s in iter_samples(urls, audio=False, node=node, worker=worker):
            if str(s["json"].get("subject_id")) in self.exclude:
                continue
            k = np.arange(0, len(s["mp4"]), self.step)
            yield from shard_face_crops(s["mp4"][k], s["landmarks.npy"][k], self.image_size, self.crop,
                                        self.crop_scale)

    def __iter__(self):
        wi = torch.utils.data.get_worker_info()
        if wi is not None:  # wi.seed = base seed (new every epoch, from the main process RNG) + worker id
            worker, base = (wi.id, wi.num_workers), wi.seed - wi.id
        else:
            worker, base = None, self._epoch
            self._epoch += 1
        node = self._node()
        parts = (worker[1] if worker else 1) * (node[1] if node else 1)
        cap = None if self.max_frames is None else -(-int(self.max_frames) // parts)
        shard_rng = np.random.default_rng([self.seed, int(base) % (2 ** 32)])
        frame_rng = np.random.default_rng([self.seed, int(base) % (2 ** 32), worker[0] if worker else 0])
        buf: list[np.ndarray] = []
        n = 0
        for im in self._frames(node, worker, shard_rng):
            if cap is not None and n >= cap:
                break
            n += 1
            if not self.shuffle:
                yield {"image": prepare_image(im, self.image_size, self.grayscale)}
                continue
            if len(buf) < self.buffer:
                buf.append(im)
                continue
            j = int(frame_rng.integers(len(buf)))
            buf[j], im = im, buf[j]
            yield {"image": prepare_image(im, self.image_size, self.grayscale)}
        if self.shuffle:
            for j in frame_rng.permutation(len(buf)):
                yield {"image": prepare_image(buf[j], self.image_size, self.grayscale)}


def _same_root(a: str, b: str | None) -> bool:
    """Whether two dataset roots (paths or URLs) name the same dataset."""
    if not b:
        return False
    if "://" in str(a) or "://" in str(b):
        return str(a).rstrip("/") == str(b).rstrip("/")
    return os.path.realpath(a) == os.path.realpath(b)


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
            dataset: ``"ckplus"`` (:class:`CKPlusAUDataset`), ``"csv"`` (:class:`AUCsvDataset`) or ``"shards"``
                (:class:`ShardAUDataset` of the ``mien prepare --au-labels`` dataset at ``shards``).
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
            input: ``"image"`` (batches of images) or ``"features"``: each image is turned once into the
                default AU model's 1660 features (:class:`AUFeatureDataset`; faces that MediaPipe misses are
                dropped) and batches carry ``"features"`` (B, 1660) float32 instead of ``"image"`` — for
                ``AUTask(backbone="features")``. No unlabelled data in this mode.
            feature_cache: ``.npz`` file caching those features across runs (outside the repository; see
                :func:`au_image_features`).
            mirror: with ``input="features"``, add every training row a second time with the features of the
                horizontally flipped image (sided label columns swapped); validation rows are never mirrored.
            shards: ``dataset="shards"``: root (folder or fsspec URL) of a ``mien prepare --au-labels`` dataset;
                folds split its subject ids. ``label_kind``/``occurrence_threshold`` apply to its FACS values.
            unlabeled_shards: root of a ``mien prepare`` dataset (labelled or not) streamed as unlabelled frames
                (:class:`ShardFrameDataset`; instead of ``unlabeled_dir``); when it is ``shards`` itself the
                validation subjects are excluded. ``max_unlabeled`` caps its frames per epoch.
            shard_crop: how images are cut from shard clips: ``"landmarks"`` (square of ``crop_scale`` × the
                landmark box, the model's input contract) or ``"aligned"`` (the whole aligned crop; see
                :func:`shard_face_crops`).
            frame_step: use every n-th clip frame of shards (labelled and unlabelled).

        ``fold=None`` trains on every labelled sample and has no validation split (``val_dataloader`` is
        empty): the final refit after cross-validation.

        Training batches are the labelled dict, or ``{"labeled": dict, "unlabeled": {"image": …}}`` when
        ``unlabeled_dir`` or ``unlabeled_shards`` is set (``CombinedLoader`` mode ``max_size_cycle``: an epoch lasts as long as the longer
        loader and the shorter one cycles; cap the unlabelled set with ``max_unlabeled``).
        """

        def __init__(self, dataset: str = "ckplus", csv: str = "", au_names: list[str] | None = None,
                     crops_dir: str | None = None, merge_sides: bool = False, image_size: int = 64,
                     grayscale: bool = False, n_folds: int = 5, fold: int | None = 0, seed: int = 0,
                     unlabeled_dir: str | None = None, max_unlabeled: int | None = None, batch_size: int = 32,
                     unlabeled_batch_size: int | None = None, num_workers: int = 0,
                     label_kind: str = "intensity", occurrence_threshold: float = 1.0,
                     subject_column: str | None = None, crop_scale: float = 1.1, input: str = "image",
                     feature_cache: str | None = None, mirror: bool = True, shards: str | None = None,
                     unlabeled_shards: str | None = None, shard_crop: str = "landmarks", frame_step: int = 1):
            super().__init__()
            if unlabeled_dir and unlabeled_shards:
                raise ValueError("give unlabelled data as unlabeled_dir or unlabeled_shards, not both")
            if input == "features" and (unlabeled_shards or dataset == "shards"):
                raise ValueError("input='features' reads image files: not available with shards "
                                 "(dataset='shards', unlabeled_shards)")
            if shard_crop not in SHARD_CROPS:
                raise ValueError(f"shard_crop must be one of {', '.join(SHARD_CROPS)}, got {shard_crop!r}")
            if input not in ("image", "features"):
                raise ValueError(f"input must be 'image' or 'features', got {input!r}")
            if input == "features" and unlabeled_dir:
                raise ValueError("input='features' does not take unlabelled images (unlabeled_dir): semi-supervised "
                                 "training applies to image models only")
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
            elif h.dataset == "shards":
                if not h.shards:
                    raise ValueError("dataset='shards' needs shards (the root of a `mien prepare --au-labels` dataset)")
                ds = ShardAUDataset(h.shards, h.au_names, h.image_size, h.label_kind, h.occurrence_threshold,
                                    h.shard_crop, h.crop_scale, h.frame_step, h.grayscale)
            else:
                raise ValueError(f"dataset must be 'ckplus', 'csv' or 'shards', got {h.dataset!r}")
            if h.input == "features":
                ds = AUFeatureDataset(ds, h.feature_cache, h.mirror)
            if h.merge_sides:
                ds.merge_sides()
            return ds

        def setup(self, stage: str | None = None) -> None:
            if self.full is not None:
                return
            h = self.hparams
            self.full = self._build()
            if h.fold is None:
                tr, va = np.arange(len(self.full)), np.zeros(0, np.int64)
            else:
                tr, va = subject_kfold(self.full.subjects, h.n_folds, h.seed)[h.fold]
            self.train_idx, self.val_idx = tr, va
            self.train_set = torch.utils.data.Subset(self.full, tr.tolist())
            if h.input == "features" and h.mirror:
                self.train_set = torch.utils.data.ConcatDataset([self.train_set, self.full.mirrored(tr)])
            self.val_set = torch.utils.data.Subset(self.full, va.tolist())
            if h.unlabeled_dir:
                self.unlabeled_set = ImageFolderDataset(h.unlabeled_dir, h.image_size, h.grayscale, h.max_unlabeled)
            if h.unlabeled_shards:
                same = h.dataset == "shards" and _same_root(h.unlabeled_shards, h.shards)
                self.unlabeled_set = ShardFrameDataset(
                    h.unlabeled_shards, h.image_size, h.shard_crop, h.crop_scale, h.frame_step, h.grayscale,
                    h.max_unlabeled, exclude_subjects=set(self.full.subjects[self.val_idx]) if same else None,
                    seed=h.seed)

        @property
        def au_names(self) -> list[str]:
            return output_au_names(self.hparams.au_names or [], self.hparams.merge_sides)

        def class_counts(self) -> tuple[np.ndarray, np.ndarray]:
            """(pos_counts, neg_counts) int64 (A,) of the training split (for the distribution-balanced loss)."""
            self.setup()
            if self.hparams.input == "features" and self.hparams.mirror:
                o = self.full.occ[self.train_idx]
                perm = flip_permutation(self.full.au_names)
                o = np.concatenate([o, o if perm is None else o[:, perm]])
                return (o == 1).sum(0).astype(np.int64), (o == 0).sum(0).astype(np.int64)
            return self.full.class_counts(self.train_idx)

        @property
        def feature_dim(self) -> int | None:
            """D of ``input="features"`` batches (None for images)."""
            if self.hparams.input != "features":
                return None
            self.setup()
            return self.full.feature_dim

        def feature_stats(self) -> tuple[np.ndarray, np.ndarray]:
            """(mean, std) float32 (D,) of the training rows' features, mirrored rows included (std with
            ddof = 1, like ``torch.std``) — the standardisation of :class:`mien.models.au.head.AUHead`.

            Raises:
                ValueError: not ``input="features"``.
            """
            if self.hparams.input != "features":
                raise ValueError("feature_stats needs input='features'")
            self.setup()
            x = self.full.features[self.train_idx]
            if self.hparams.mirror:
                x = torch.cat([x, self.full.features_mirrored[self.train_idx]])
            x = x.double()
            return x.mean(0).float().numpy(), x.std(0).float().numpy()

        def _loader(self, ds, bs, shuffle):
            iterable = isinstance(ds, torch.utils.data.IterableDataset)  # shuffles itself (ShardFrameDataset)
            return torch.utils.data.DataLoader(ds, batch_size=bs, shuffle=shuffle and not iterable,
                                               drop_last=shuffle and len(ds) > bs,
                                               num_workers=self.hparams.num_workers)

        def train_dataloader(self):
            lab = self._loader(self.train_set, self.hparams.batch_size, True)
            if self.unlabeled_set is None:
                return lab
            from lightning.pytorch.utilities import CombinedLoader

            ulb = self._loader(self.unlabeled_set, self.hparams.unlabeled_batch_size or self.hparams.batch_size, True)
            return CombinedLoader({"labeled": lab, "unlabeled": ulb}, mode="max_size_cycle")

        def val_dataloader(self):
            if not len(self.val_set):
                return []
            return self._loader(self.val_set, self.hparams.batch_size, False)

        def test_dataloader(self):
            return self.val_dataloader()
