"""``ClipDataModule``: a Lightning DataModule over a prepared dataset, with a subject-disjoint validation split.

Needs ``lightning`` (not part of the ``data`` extra; training only — nothing in analysis imports this module).
Shards are listed with :func:`mien.data.reader.shard_urls`. Shards hold one source video each and a video has one
subject, so splitting shards by subject gives train/validation sets without shared identities.
"""

from __future__ import annotations

import math

import lightning as L
import torch

from mien.data.reader import ClipDataset, open_dataset, shard_urls


def subject_split(root: str, val_fraction: float = 0.1) -> tuple[list[str], list[str]]:
    """(train shard URLs, validation shard URLs): the last ``ceil(val_fraction · subjects)`` subject ids (by the
    manifest's stable integer ids) go to validation. With one subject, everything is training data."""
    info = open_dataset(root)
    idx = info.index
    subjects = sorted(set(idx["subject_id"].tolist()))
    n_val = math.ceil(val_fraction * len(subjects)) if len(subjects) > 1 and val_fraction > 0 else 0
    val_subjects = set(subjects[len(subjects) - n_val:])
    val_shards = set(idx.loc[idx["subject_id"].isin(val_subjects), "shard"])
    train, val = [], []
    for url in shard_urls(root):  # manifest order
        (val if url.rstrip("/").rsplit("/", 1)[-1] in val_shards else train).append(url)
    return train, val


def _collate(batch: list[dict]) -> dict:
    """Stack equal-shaped tensors (clips of one dataset share T and S); keep keys and metadata as lists."""
    out: dict = {"__key__": [b["__key__"] for b in batch], "meta": [b["meta"] for b in batch]}
    for k in batch[0]:
        if k in out:
            continue
        vals = [b.get(k) for b in batch]
        if all(isinstance(v, torch.Tensor) for v in vals) and len({tuple(v.shape) for v in vals}) == 1:
            out[k] = torch.stack(vals)
        else:
            out[k] = vals
    return out


class ClipDataModule(L.LightningDataModule):
    """Train/validation loaders of :class:`~mien.data.ClipDataset`: unseen subjects, and held-out time segments.

    Two validation sets, each a DataLoader of :meth:`val_dataloader` in the order of ``val_set_names``:

    * ``"unseen_subjects"``: every clip of the last ``ceil(val_fraction · subjects)`` subject ids;
    * ``"heldout_time"`` (when ``val_time_fraction > 0``): in every video of the training subjects, the clips that
      start at or after ``(1 − val_time_fraction)`` × the video's last clip start — never trained on.

    With one set, :meth:`val_dataloader` returns a single loader.

    Args:
        root: dataset root (local folder or fsspec URL).
        batch_size: clips per batch; tensors are stacked (``video`` (B, T, 3, S, S) uint8 …); with audio-less
            clips in a batch the audio entries are lists.
        num_workers: DataLoader workers (shards are split across them and across nodes).
        val_fraction: fraction of subjects held out for validation.
        val_time_fraction: fraction (by clip start time) of each training-subject video held out (0: none).
        seed: shard shuffling seed for training.
    """

    def __init__(self, root: str, batch_size: int = 8, num_workers: int = 2, val_fraction: float = 0.1,
                 val_time_fraction: float = 0.0, seed: int = 0):
        super().__init__()
        if not 0.0 <= val_time_fraction < 1.0:
            raise ValueError(f"val_time_fraction must be in [0, 1), got {val_time_fraction}")
        self.root, self.batch_size, self.num_workers = root, batch_size, num_workers
        self.val_fraction, self.val_time_fraction, self.seed = val_fraction, val_time_fraction, seed
        self.train_urls: list[str] = []
        self.val_urls: list[str] = []
        self.heldout_keys: set[str] = set()
        self.val_set_names: list[str] = []

    def setup(self, stage: str | None = None) -> None:
        self.train_urls, self.val_urls = subject_split(self.root, self.val_fraction)
        info = open_dataset(self.root)
        manifest = info.manifest
        idx = info.index
        val_shards = {u.rstrip("/").rsplit("/", 1)[-1] for u in self.val_urls}
        self.heldout_keys = set()
        if self.val_time_fraction > 0:
            train_rows = idx[~idx["shard"].isin(val_shards)]
            last = train_rows.groupby("video_key")["start_sec"].transform("max")
            held = train_rows[(train_rows["start_sec"] >= (1 - self.val_time_fraction) * last) & (last > 0)]
            self.heldout_keys = set(held["key"].tolist())
        held_shards = set(idx.loc[idx["key"].isin(self.heldout_keys), "shard"])
        self._heldout_urls = [u for u in self.train_urls if u.rstrip("/").rsplit("/", 1)[-1] in held_shards]
        self._n_train = int((~idx["shard"].isin(val_shards)).sum()) - len(self.heldout_keys)
        self._n_val = int(idx["shard"].isin(val_shards).sum())
        self.val_set_names = [n for n, k in (("unseen_subjects", self._n_val), ("heldout_time", len(self.heldout_keys)))
                              if k]
        align = manifest.get("feature_extractors", {}).get("alignment", {})
        #: crop contract of the clips (see mien.face.crops.parse_crop_contract); models check theirs against it
        self.crop_contract = f"aligned-ffhq-{float(align.get('margin', 0.0))}"

    def _loader(self, urls: list[str], shuffle: bool, n_samples: int, **keys) -> torch.utils.data.DataLoader:
        world = int(getattr(self.trainer, "world_size", 1) or 1) if self.trainer is not None else 1
        if world <= 1:
            ds = ClipDataset(urls, shuffle_shards=shuffle, seed=self.seed, **keys)
        else:
            # DDP needs the same number of batches on every rank, or the ranks wait for each other forever:
            # every DataLoader worker of every rank yields exactly `per_worker` samples (cycling its shards).
            # With fewer shards than rank × worker slots, every rank reads all shards (duplicates across ranks).
            workers = max(1, self.num_workers)
            per_worker = max(self.batch_size, n_samples // (world * workers))
            split = len(urls) >= world * workers
            ds = ClipDataset(urls, shuffle_shards=shuffle, seed=self.seed, split_nodes=split, split_workers=split,
                             **keys)
            ds = ds.repeat().with_epoch(per_worker)
        return torch.utils.data.DataLoader(ds, batch_size=self.batch_size, num_workers=self.num_workers,
                                           collate_fn=_collate)

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        return self._loader(self.train_urls, True, self._n_train, exclude_keys=self.heldout_keys)

    def val_dataloader(self):
        """One DataLoader per name in ``val_set_names`` (a single DataLoader when there is one set)."""
        loaders = []
        for name in self.val_set_names:
            if name == "unseen_subjects":
                loaders.append(self._loader(self.val_urls, False, self._n_val))
            else:
                loaders.append(self._loader(self._heldout_urls, False, len(self.heldout_keys),
                                            only_keys=self.heldout_keys))
        if not loaders:
            return self._loader(self.val_urls, False, 0)
        return loaders[0] if len(loaders) == 1 else loaders


def training_loader(root: str, val_fraction: float = 0.1, val_time_fraction: float = 0.0, batch_size: int = 8
                    ) -> tuple[torch.utils.data.DataLoader, list[str]]:
    """The clips a :class:`ClipDataModule` with these splits trains on — its training subjects minus their
    held-out time segments — in manifest order, unshuffled, in the main process: for what is built from training
    data after training (a warp tokenizer's exemplar banks, a face3d encoder's batch-norm statistics).

    Args:
        root: dataset root; val_fraction, val_time_fraction: as given to :class:`ClipDataModule` in training;
        batch_size: clips per batch (collated as in training).

    Returns:
        (the DataLoader, the training shard URLs it reads).

    Raises:
        ValueError: ``val_time_fraction`` outside [0, 1). InputError: ``root`` is not a prepared dataset.
    """
    dm = ClipDataModule(root, batch_size=batch_size, num_workers=0, val_fraction=val_fraction,
                        val_time_fraction=val_time_fraction)
    dm.setup("fit")
    return dm._loader(dm.train_urls, False, dm._n_train, exclude_keys=dm.heldout_keys), list(dm.train_urls)
