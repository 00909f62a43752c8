"""The AU LightningDataModule (training only): labelled AU data from :mod:`mien.data.au`, split by subject, plus
optional unlabelled images for FixMatch/DeFixMatch. Its options come in groups (dataclasses; YAML / CLI keys
``data.labels.*``, ``data.image.*``, ``data.split.*``, ``data.unlabeled.*``, ``data.features.*``).
"""

from __future__ import annotations

from dataclasses import dataclass

import lightning.pytorch as pl
import numpy as np
import torch

from mien.data.au import (
    SHARD_CROPS,
    AUCsvDataset,
    AUFeatureDataset,
    CKPlusAUDataset,
    ImageFolderDataset,
    ShardAUDataset,
    ShardFrameDataset,
    same_root,
    subject_kfold,
)
from mien.data.labels.facs import flip_permutation, output_au_names
from mien.tasks.au.config import ImageInput
from mien.tasks.config import as_config

__all__ = ["AUDataModule", "FeatureOptions", "LabelSource", "SplitOptions", "UnlabeledSource"]

DATASETS = ("ckplus", "csv", "shards")


@dataclass
class LabelSource:
    """Where the labelled AU data comes from.

    Attributes:
        dataset: ``"ckplus"`` (:class:`~mien.data.au.CKPlusAUDataset`), ``"csv"``
            (:class:`~mien.data.au.AUCsvDataset`) or ``"shards"`` (:class:`~mien.data.au.ShardAUDataset` of the
            ``mien prepare --au-labels`` dataset at ``shards``).
        csv: labels CSV. crops_dir: image folder for ``"csv"`` (CK+: the CSV's folder by default).
        shards: ``dataset="shards"``: root (folder or fsspec URL) of a ``mien prepare --au-labels`` dataset.
        au_names: label columns (they define the model's outputs).
        merge_sides: merge left/right columns (the model's names: :func:`mien.data.labels.facs.output_au_names`).
        label_kind, occurrence_threshold, subject_column: see :class:`~mien.data.au.AUCsvDataset` (the first two
            also apply to shards' FACS values).
    """

    dataset: str = "ckplus"
    csv: str = ""
    crops_dir: str | None = None
    shards: str | None = None
    au_names: list[str] | None = None
    merge_sides: bool = False
    label_kind: str = "intensity"
    occurrence_threshold: float = 1.0
    subject_column: str | None = None


@dataclass
class SplitOptions:
    """Subject-disjoint split (:func:`mien.data.au.subject_kfold`): validation fold ``fold`` of ``n_folds``
    (None: train on every labelled sample, no validation — the final refit after cross-validation)."""

    n_folds: int = 5
    fold: int | None = 0
    seed: int = 0


@dataclass
class UnlabeledSource:
    """Unlabelled images for FixMatch/DeFixMatch: a folder of face images (``dir``) or a ``mien prepare``
    dataset (``shards``, labelled or not; when it is the labelled ``labels.shards`` the validation subjects are
    left out). ``max_items`` caps the images (frames per epoch for shards); ``batch_size`` defaults to the
    labelled one."""

    dir: str | None = None
    shards: str | None = None
    max_items: int | None = None
    batch_size: int | None = None


@dataclass
class FeatureOptions:
    """``input="features"``: ``cache`` — ``.npz`` file caching the per-image features across runs (outside the
    repository; see :func:`mien.pipelines.au_features.au_image_features`); ``mirror`` — add every training row a
    second time with the features of the horizontally flipped image (sided label columns swapped; validation
    rows are never mirrored)."""

    cache: str | None = None
    mirror: bool = True


class AUDataModule(pl.LightningDataModule):
    """Labelled AU data split by subject into train/val, plus optional unlabelled images.

    Args:
        labels: :class:`LabelSource`.
        image: how images are read and cut (:class:`mien.tasks.au.config.ImageInput`: side S, grayscale, crop
            scale — the model's input contract, linked to ``model.image``).
        split: :class:`SplitOptions`.
        unlabeled: :class:`UnlabeledSource` (image input only).
        input: ``"image"`` (batches of images, for :class:`mien.tasks.au.AUImageTask`) or ``"features"``: each
            image is turned once into the default AU model's 1660 features (:class:`~mien.data.au.AUFeatureDataset`
            with :func:`mien.pipelines.au_features.au_image_features`; faces that MediaPipe misses are dropped)
            and batches carry ``"features"`` (B, 1660) float32 — for :class:`mien.tasks.au.AUFeaturesTask`.
        features: :class:`FeatureOptions` (``input="features"``).
        shard_crop: how images are cut from shard clips: ``"landmarks"`` (square of ``image.crop_scale`` × the
            landmark box, the model's input contract) or ``"aligned"`` (:func:`mien.data.au.shard_face_crops`).
        frame_step: use every n-th clip frame of shards (labelled and unlabelled).
        batch_size: labelled batch. num_workers: DataLoader workers.

    Training batches are the labelled dict, or ``{"labeled": dict, "unlabeled": {"image": …}}`` with unlabelled
    data (``CombinedLoader`` mode ``max_size_cycle``: an epoch lasts as long as the longer loader and the shorter
    one cycles; cap the unlabelled set with ``unlabeled.max_items``).

    Raises:
        ValueError: contradictory options (both unlabelled sources, features with shards or unlabelled data,
        unknown dataset / input / shard crop).
    """

    def __init__(self, labels: LabelSource = LabelSource(), image: ImageInput = ImageInput(),  # noqa: B008
                 split: SplitOptions = SplitOptions(), unlabeled: UnlabeledSource = UnlabeledSource(),  # noqa: B008
                 input: str = "image", features: FeatureOptions = FeatureOptions(), shard_crop: str = "landmarks", frame_step: int = 1,  # noqa: B008
                 batch_size: int = 32, num_workers: int = 0):
        super().__init__()
        self.labels, self.image = as_config(LabelSource, labels), as_config(ImageInput, image)
        self.split, self.unlabeled = as_config(SplitOptions, split), as_config(UnlabeledSource, unlabeled)
        self.features = as_config(FeatureOptions, features)
        self.input, self.shard_crop, self.frame_step = input, shard_crop, frame_step
        self.batch_size, self.num_workers = batch_size, num_workers
        u = self.unlabeled
        if u.dir and u.shards:
            raise ValueError("give unlabelled data as unlabeled.dir or unlabeled.shards, not both")
        if self.labels.dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {DATASETS}, got {self.labels.dataset!r}")
        if input not in ("image", "features"):
            raise ValueError(f"input must be 'image' or 'features', got {input!r}")
        if input == "features" and (u.shards or self.labels.dataset == "shards"):
            raise ValueError("input='features' reads image files: not available with shards "
                             "(dataset='shards', unlabeled.shards)")
        if input == "features" and u.dir:
            raise ValueError("input='features' does not take unlabelled images (unlabeled.dir): semi-supervised "
                             "training applies to image models only")
        if shard_crop not in SHARD_CROPS:
            raise ValueError(f"shard_crop must be one of {', '.join(SHARD_CROPS)}, got {shard_crop!r}")
        self.full = None
        self.train_set = self.val_set = self.unlabeled_set = None

    def _build(self):
        lab, im = self.labels, self.image
        if lab.dataset == "ckplus":
            ds = CKPlusAUDataset(lab.csv, lab.au_names, im.size, root=lab.crops_dir, grayscale=im.grayscale)
        elif lab.dataset == "csv":
            if not lab.crops_dir:
                raise ValueError("dataset='csv' needs labels.crops_dir")
            ds = AUCsvDataset(lab.csv, lab.crops_dir, lab.au_names, im.size, lab.label_kind, lab.subject_column,
                              lab.occurrence_threshold, im.grayscale)
        else:
            if not lab.shards:
                raise ValueError("dataset='shards' needs labels.shards (the root of a `mien prepare --au-labels` "
                                 "dataset)")
            ds = ShardAUDataset(lab.shards, lab.au_names, im.size, lab.label_kind, lab.occurrence_threshold,
                                self.shard_crop, im.crop_scale, self.frame_step, im.grayscale)
        if self.input == "features":
            from functools import partial

            from mien.pipelines.au_features import au_image_features

            ds = AUFeatureDataset(ds, partial(au_image_features, cache=self.features.cache,
                                              mirror=self.features.mirror))
        if lab.merge_sides:
            ds.merge_sides()
        return ds

    def setup(self, stage: str | None = None) -> None:
        if self.full is not None:
            return
        sp, u, im = self.split, self.unlabeled, self.image
        self.full = self._build()
        if sp.fold is None:
            tr, va = np.arange(len(self.full)), np.zeros(0, np.int64)
        else:
            tr, va = subject_kfold(self.full.subjects, sp.n_folds, sp.seed)[sp.fold]
        self.train_idx, self.val_idx = tr, va
        self.train_set = torch.utils.data.Subset(self.full, tr.tolist())
        if self.input == "features" and self.features.mirror:
            self.train_set = torch.utils.data.ConcatDataset([self.train_set, self.full.mirrored(tr)])
        self.val_set = torch.utils.data.Subset(self.full, va.tolist())
        if u.dir:
            self.unlabeled_set = ImageFolderDataset(u.dir, im.size, im.grayscale, u.max_items)
        if u.shards:
            same = self.labels.dataset == "shards" and same_root(u.shards, self.labels.shards)
            self.unlabeled_set = ShardFrameDataset(
                u.shards, im.size, self.shard_crop, im.crop_scale, self.frame_step, im.grayscale, u.max_items,
                exclude_subjects=set(self.full.subjects[self.val_idx]) if same else None, seed=sp.seed)

    @property
    def au_names(self) -> list[str]:
        """The model's output names (side-merged when ``labels.merge_sides``)."""
        return output_au_names(self.labels.au_names or [], self.labels.merge_sides)

    def class_counts(self) -> tuple[np.ndarray, np.ndarray]:
        """(pos_counts, neg_counts) int64 (A,) of the training split, mirrored rows included (for the
        distribution-balanced loss and balanced BCE weights)."""
        self.setup()
        if self.input == "features" and self.features.mirror:
            o = self.full.occ[self.train_idx]
            perm = flip_permutation(self.full.au_names)
            o = np.concatenate([o, o if perm is None else o[:, perm]])
            return (o == 1).sum(0).astype(np.int64), (o == 0).sum(0).astype(np.int64)
        return self.full.class_counts(self.train_idx)

    @property
    def feature_dim(self) -> int | None:
        """D of ``input="features"`` batches (None for images)."""
        if self.input != "features":
            return None
        self.setup()
        return self.full.feature_dim

    def feature_stats(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std) float32 (D,) of the training rows' features, mirrored rows included (std with ddof = 1,
        like ``torch.std``) — the standardisation of :class:`mien.models.au.head.AUHead`.

        Raises:
            ValueError: not ``input="features"``.
        """
        if self.input != "features":
            raise ValueError("feature_stats needs input='features'")
        self.setup()
        x = self.full.features[self.train_idx]
        if self.features.mirror:
            x = torch.cat([x, self.full.features_mirrored[self.train_idx]])
        x = x.double()
        return x.mean(0).float().numpy(), x.std(0).float().numpy()

    def _loader(self, ds, bs, shuffle):
        iterable = isinstance(ds, torch.utils.data.IterableDataset)  # shuffles itself (ShardFrameDataset)
        return torch.utils.data.DataLoader(ds, batch_size=bs, shuffle=shuffle and not iterable,
                                           drop_last=shuffle and len(ds) > bs, num_workers=self.num_workers)

    def train_dataloader(self):
        lab = self._loader(self.train_set, self.batch_size, True)
        if self.unlabeled_set is None:
            return lab
        from lightning.pytorch.utilities import CombinedLoader

        ulb = self._loader(self.unlabeled_set, self.unlabeled.batch_size or self.batch_size, True)
        return CombinedLoader({"labeled": lab, "unlabeled": ulb}, mode="max_size_cycle")

    def val_dataloader(self):
        if not len(self.val_set):
            return []
        return self._loader(self.val_set, self.batch_size, False)

    def test_dataloader(self):
        return self.val_dataloader()
