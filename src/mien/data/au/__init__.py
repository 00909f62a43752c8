"""Action Unit datasets (plain torch Datasets) and subject-disjoint folds.

Modules:

* :mod:`~mien.data.au.labelled` — :class:`CKPlusAUDataset` (CK+ FACS labels), :class:`AUCsvDataset`
  (DISFA-style CSV + crops folder) and their base :class:`LabelledAUDataset`;
* :mod:`~mien.data.au.features` — :class:`AUFeatureDataset`: labelled rows as per-face feature vectors,
  computed by a callable given to it (the trainer passes :func:`mien.pipelines.au_features.au_image_features`);
* :mod:`~mien.data.au.shards` — :class:`ShardAUDataset` (labelled frames of a ``mien prepare --au-labels``
  dataset) and :class:`ShardFrameDataset` (unlabelled frames streamed from any prepared dataset);
* :mod:`~mien.data.au.images` — image I/O and :class:`ImageFolderDataset` (unlabelled face crops);
* :mod:`~mien.data.au.folds` — :func:`subject_kfold` (GroupKFold-like: subjects sorted by size, each to the fold
  with the fewest samples).

FACS codes and label-name helpers are in :mod:`mien.data.labels.facs`; the Lightning DataModule that combines
these for training is :class:`mien.tasks.au.AUDataModule`.

Labelled items: ``{"image": (3, S, S) float32 RGB [0, 1] | "features": (D,) float32, "occ": (A,) float32 0/1,
"occ_mask": (A,) float32 0/1, "int": (A,) float32 [0, 1] (FACS / 5), "int_mask": (A,) float32, "index": int}``;
unlabelled items: ``{"image": (3, S, S)}``.
"""

from mien.data.au.features import AUFeatureDataset
from mien.data.au.folds import subject_kfold
from mien.data.au.images import IMAGE_EXTS, ImageFolderDataset, prepare_image, read_rgb
from mien.data.au.labelled import AUCsvDataset, CKPlusAUDataset, LabelledAUDataset
from mien.data.au.shards import SHARD_CROPS, ShardAUDataset, ShardFrameDataset, same_root, shard_face_crops

__all__ = [
    "IMAGE_EXTS",
    "SHARD_CROPS",
    "AUCsvDataset",
    "AUFeatureDataset",
    "CKPlusAUDataset",
    "ImageFolderDataset",
    "LabelledAUDataset",
    "ShardAUDataset",
    "ShardFrameDataset",
    "prepare_image",
    "read_rgb",
    "same_root",
    "shard_face_crops",
    "subject_kfold",
]
