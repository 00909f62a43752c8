"""``ClipDataModule``: a Lightning DataModule over a prepared dataset, with a subject-disjoint validation split.

Needs ``lightning`` (not part of the ``data`` extra). Shards hold one source video each and a video has one
subject, so splitting shards by subject gives train/validation sets without shared identities.
"""

from __future__ import annotations

import math

import lightning as L
import torch

from mien.data import store
from mien.data.reader import ClipDataset, open_dataset


def subject_split(root: str, val_fraction: float = 0.1) -> tuple[list[str], list[str]]:
    """(train shard URLs, validation shard URLs): the last ``ceil(val_fraction · subjects)`` subject ids (by the
    manifest's stable integer ids) go to validation. With one subject, everything is training data."""
    info = open_dataset(root)
    fs, path = store.get_fs(root)
    idx = info.index
    subjects = sorted(set(idx["subject_id"].tolist()))
    n_val = math.ceil(val_fraction * len(subjects)) if len(subjects) > 1 and val_fraction > 0 else 0
    val_subjects = set(subjects[len(subjects) - n_val:])
    val_shards = set(idx.loc[idx["subject_id"].isin(val_subjects), "shard"])
    train, val = [], []
    for s in info.manifest["shards"]:
        p = store.join(path, "shards", s["name"])
        url = p if store.is_local(fs) else fs.unstrip_protocol(p)
        (val if s["name"] in val_shards else train).append(url)
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
    """Train/validation loaders of :class:`~mien.data.ClipDataset` (subject-disjoint split).

    Args:
        root: dataset root (local folder or fsspec URL).
        batch_size: clips per batch; tensors are stacked (``video`` (B, T, 3, S, S) uint8 …); with audio-less
            clips in a batch the audio entries are lists.
        num_workers: DataLoader workers (shards are split across them and across nodes).
        val_fraction: fraction of subjects held out for validation.
        seed: shard shuffling seed for training.
    """

    def __init__(self, root: str, batch_size: int = 8, num_workers: int = 2, val_fraction: float = 0.1,
                 seed: int = 0):
        super().__init__()
        self.root, self.batch_size, self.num_workers = root, batch_size, num_workers
        self.val_fraction, self.seed = val_fraction, seed
        self.train_urls: list[str] = []
        self.val_urls: list[str] = []

    def setup(self, stage: str | None = None) -> None:
        self.train_urls, self.val_urls = subject_split(self.root, self.val_fraction)
        manifest = open_dataset(self.root).manifest
        self._samples = {s["name"]: int(s["samples"]) for s in manifest["shards"]}
        align = manifest.get("feature_extractors", {}).get("alignment", {})
        #: crop contract of the clips (see mien.face.crops.parse_crop_contract); models check theirs against it
        self.crop_contract = f"aligned-ffhq-{float(align.get('margin', 0.0))}"

    def _loader(self, urls: list[str], shuffle: bool) -> torch.utils.data.DataLoader:
        world = int(getattr(self.trainer, "world_size", 1) or 1) if self.trainer is not None else 1
        if world <= 1:
            ds = ClipDataset(urls, shuffle_shards=shuffle, seed=self.seed)
        else:
            # DDP needs the same number of batches on every rank, or the ranks wait for each other forever:
            # every DataLoader worker of every rank yields exactly `per_worker` samples (cycling its shards).
            # With fewer shards than rank × worker slots, every rank reads all shards (duplicates across ranks).
            workers = max(1, self.num_workers)
            total = sum(self._samples.get(u.rstrip("/").rsplit("/", 1)[-1], 0) for u in urls)
            per_worker = max(self.batch_size, total // (world * workers))
            split = len(urls) >= world * workers
            ds = ClipDataset(urls, shuffle_shards=shuffle, seed=self.seed, split_nodes=split, split_workers=split)
            ds = ds.repeat().with_epoch(per_worker)
        return torch.utils.data.DataLoader(ds, batch_size=self.batch_size, num_workers=self.num_workers,
                                           collate_fn=_collate)

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        return self._loader(self.train_urls, True)

    def val_dataloader(self) -> torch.utils.data.DataLoader:
        return self._loader(self.val_urls, False)
