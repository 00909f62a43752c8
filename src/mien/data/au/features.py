"""Labelled AU rows as per-face feature vectors (for :class:`mien.models.au.head.AUHead`).

The features are computed outside ``mien.data`` (data code never runs face models): pass them precomputed, or a
callable that computes them from the image paths — the trainer uses
:func:`mien.pipelines.au_features.au_image_features` (MediaPipe mesh + face-api embedding, optionally cached).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from mien.data.au.labelled import LabelledAUDataset
from mien.data.labels.facs import flip_permutation

__all__ = ["AUFeatureDataset", "FeatureFn"]

FeatureFn = Callable[[Sequence[str]], tuple[np.ndarray, "np.ndarray | None", np.ndarray]]
"""``fn(paths) -> (features (N, D) float32, mirrored (N, D) float32 or None, face_found (N,) bool)``."""


class AUFeatureDataset(LabelledAUDataset):
    """A labelled AU dataset turned into per-face feature vectors for :class:`mien.models.au.head.AUHead`.

    The images of ``source`` (:class:`~mien.data.au.CKPlusAUDataset` / :class:`~mien.data.au.AUCsvDataset`)
    are converted once by ``features`` (a :data:`FeatureFn` called with the source's image paths, or its result
    ``(features, mirrored, face_found)`` precomputed for those paths); rows without a face (``face_found``
    False) are dropped (``source_index`` says which source rows were kept). Labels, subjects and
    ``merge_sides`` behave as in the source.

    Items: ``{"features": (D,) float32, "occ": (A,) float32 0/1, "occ_mask": (A,) float32, "int": (A,) float32
    [0, 1], "int_mask": (A,) float32, "index": int}`` (D = 1660 for the default features). :meth:`mirrored`
    gives the same rows with the features of the flipped images and left/right label columns swapped
    (:func:`mien.data.labels.facs.flip_permutation`).

    Args:
        source: the labelled image dataset.
        features: :data:`FeatureFn` or its ``(features, mirrored, face_found)`` result for ``source.paths``.

    Attributes:
        features: float32 tensor (N, D); features_mirrored: (N, D) or None; frame: the source's label table
        rows that were kept (CK+ only, else None).

    Raises:
        ValueError: the features do not have one row per source image.
    """

    def __init__(self, source: LabelledAUDataset, features: FeatureFn | tuple):
        feats, flipped, ok = features(source.paths) if callable(features) else features
        if len(feats) != len(source.paths) or len(ok) != len(source.paths):
            raise ValueError(f"{len(feats)} feature rows for {len(source.paths)} images")
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
            raise ValueError("this AUFeatureDataset was built without mirrored features")
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

