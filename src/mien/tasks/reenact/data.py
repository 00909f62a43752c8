"""Reenactment pairs from mien shards: :class:`PairDataset` (streaming) and :class:`ReenactDataModule`.

A pair is two frames of one prepared clip (one face track) at different times: the source and the driver of a
self-reenactment. Cross-identity pairs are formed within a batch (the source of another subject,
:func:`cross_permutation`); their mesh warps are made by :func:`collate_pairs` in the DataLoader's workers. Shards are read by :class:`mien.data.reader.ClipDataset` (split over DataLoader workers
and nodes); clips are mixed by a shuffle buffer so that batches hold several subjects.
"""

from __future__ import annotations

import random
import zlib

import lightning.pytorch as pl
import numpy as np
import torch

from mien.data.datamodule import subject_split
from mien.data.reader import ClipDataset, open_dataset, shard_urls

__all__ = ["CROSS_KEYS", "PairDataset", "ReenactDataModule", "add_warp", "collate_pairs", "cross_permutation",
           "cross_warp", "flip_pair"]

#: batch keys of the cross-identity warps added by :func:`collate_pairs` (the fields of :func:`cross_warp`)
CROSS_KEYS = ("cross_rows", "cross_sources", "cross_warped", "cross_flow", "cross_points")


def flip_pair(item: dict) -> dict:
    """Mirror a pair horizontally: images, landmarks (x → S − x) and poses (yaw, roll, tx change sign)."""
    out = dict(item)
    s = item["src"].shape[-1]
    for k in ("src", "drv"):
        out[k] = item[k].flip(-1)
    for k in ("src_pose", "drv_pose"):
        p = item[k].clone()
        p[[0, 2, 3]] = -p[[0, 2, 3]]
        out[k] = p
    for k in ("src_landmarks", "drv_landmarks"):
        lm = item[k].clone()
        lm[:, 0] = s - lm[:, 0]
        out[k] = lm
    return out


def _sample_warp(src: torch.Tensor, src_points: np.ndarray, dst_points: np.ndarray,
                 ring: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The mesh warp of one source crop as tensors: ``src`` uint8 (3, S, S), its 468 mesh points ``src_points`` and
    their targets ``dst_points`` float64 (468, 2) crop px; ``ring``: the source's :class:`~mien.face.warp.BorderRings`
    entry, if cached. Returns (warped uint8 (3, S, S), flow float32 (2, S, S), points float32 (468, 2) = the
    targets)."""
    from mien.face.warp import mesh_warp
    from mien.models.face3d.mien_face import canonical_triangles
    from mien.models.reenact.warpguided import flow_field

    mesh = {"triangles": canonical_triangles()} if ring is None else {"ring": ring}
    warped, mx, my = mesh_warp(src.permute(1, 2, 0).numpy(), src_points, dst_points, **mesh)
    return (torch.from_numpy(warped).permute(2, 0, 1).contiguous(), torch.from_numpy(flow_field(mx, my)),
            torch.from_numpy(np.asarray(dst_points).astype("float32")))


def add_warp(item: dict) -> dict:
    """Add the classical mesh warp of the pair (the input of the warp-guided refiner): the source crop warped so
    that its 468 mesh points move onto the driver's (:func:`mien.face.warp.mesh_warp`, the warp of baseline (b);
    for a self-reenactment pair relative motion with the source as reference is this absolute warp).

    Adds ``warped`` uint8 (3, S, S), ``flow`` float32 (2, S, S) (:func:`~mien.models.reenact.warpguided.flow_field`)
    and ``points`` float32 (468, 2), the target mesh points in crop px.
    """
    sp, dp = item["src_landmarks"][:468, :2].double().numpy(), item["drv_landmarks"][:468, :2].double().numpy()
    out = dict(item)
    out["warped"], out["flow"], out["points"] = _sample_warp(item["src"], sp, dp)
    return out


class PairDataset(torch.utils.data.IterableDataset):
    """(source, driver) frame pairs of prepared clips.

    Each item: ``src``, ``drv`` uint8 (3, S, S) (the shard's crops), ``src_pose``, ``drv_pose`` float32 (6,)
    (yaw, pitch, roll deg, tx, ty, tz mm), ``src_landmarks``, ``drv_landmarks`` float32 (478, 2) crop px,
    ``subject`` int64, ``key`` str; with ``warp`` also :func:`add_warp`'s ``warped``, ``flow``, ``points``.

    Args:
        urls: shard URLs; pairs_per_clip: pairs drawn from each clip per pass; min_gap: smallest frame distance
            of a pair; train: random pairs, random flips and a shuffle buffer (False: deterministic pairs
            (first frame, evenly spaced later frames), no flip); flip_p: flip probability; buffer: shuffle
            buffer size (items); seed: base seed (mixed with the epoch and worker); warp: add the mesh warp
            of each pair (:func:`add_warp`, after the flip; the warp-guided stage needs it).
    """

    def __init__(self, urls: list[str], pairs_per_clip: int = 8, min_gap: int = 5, train: bool = True,
                 flip_p: float = 0.5, buffer: int = 256, seed: int = 0, warp: bool = False):
        super().__init__()
        self.warp = bool(warp)
        self.urls, self.pairs_per_clip, self.min_gap = list(urls), pairs_per_clip, min_gap
        self.train, self.flip_p, self.buffer, self.seed = train, flip_p, buffer, seed
        self.epoch = 0

    def _pairs(self, clip: dict, rng: random.Random):
        video, pose, lm = clip["video"], clip["pose"].float(), clip["landmarks"].float()
        t = video.shape[0]
        subject = int(clip["meta"].get("subject_id", 0))
        gap = min(self.min_gap, t - 1)
        for j in range(self.pairs_per_clip):
            if self.train:
                a = rng.randrange(t)
                b = rng.choice([i for i in range(t) if abs(i - a) >= gap] or [a])
            else:
                a, b = 0, min(t - 1, (j + 1) * (t - 1) // self.pairs_per_clip)
            item = {"src": video[a], "drv": video[b], "src_pose": pose[a], "drv_pose": pose[b],
                    "src_landmarks": lm[a, :, :2], "drv_landmarks": lm[b, :, :2], "subject": torch.tensor(subject), "key": clip["__key__"]}
            if self.train and rng.random() < self.flip_p:
                item = flip_pair(item)
            yield add_warp(item) if self.warp else item

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        wid = info.id if info is not None else 0
        rng = random.Random(self.seed * 1000003 + self.epoch * 7919 + wid)
        self.epoch += 1
        clips = ClipDataset(self.urls, shuffle_shards=self.train, seed=rng.randrange(1 << 30), audio=False)
        buf: list = []
        for clip in clips:
            if not self.train:
                yield from self._pairs(clip, random.Random(zlib.crc32(clip["__key__"].encode())))
                continue
            for item in self._pairs(clip, rng):
                if len(buf) < self.buffer:
                    buf.append(item)
                    continue
                i = rng.randrange(len(buf))
                buf[i], item = item, buf[i]
                yield item
        rng.shuffle(buf)
        yield from buf


def cross_permutation(subjects: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Partner index of each batch row from another subject: (perm (B,), valid (B,) bool).

    Row i's cross-identity source is row perm[i]; valid is False where the batch has no other subject.
    """
    b = subjects.shape[0]
    perm = torch.arange(b, device=subjects.device)
    valid = torch.zeros(b, dtype=torch.bool, device=subjects.device)
    for i in range(b):
        for k in range(1, b):
            j = (i + k) % b
            if subjects[j] != subjects[i]:
                perm[i], valid[i] = j, True
                break
    return perm, valid


def cross_warp(batch: dict) -> tuple[torch.Tensor, ...] | None:
    """Cross-identity warps of a batch of pairs, as ``mien evaluate reenact`` makes them: row i's driver motion
    (its driver relative to its own source frame, the reference) applied by relative motion
    (:func:`mien.face.warp.relative_targets`) to the source of another subject in the batch
    (:func:`cross_permutation`), and that source warped onto the targets (:func:`mien.face.warp.mesh_warp`).
    Training calls it through :func:`collate_pairs` (in the DataLoader's workers), not on the main process.

    Args:
        batch: collated pairs with ``src`` uint8 (B, 3, S, S), ``src_landmarks``, ``drv_landmarks`` (B, 478, ≥2)
            crop px, ``subject`` (B,).

    Returns:
        None when the batch has one subject, else (rows (R,) long: the driver rows; sources (R,) long: the rows
        whose source is animated; warped float32 (R, 3, S, S) in [0, 1]; flow float32 (R, 2, S, S); points
        float32 (R, 468, 2)), on the batch's device.
    """
    from mien.face.warp import BorderRings, relative_targets
    from mien.models.face3d.mien_face import canonical_triangles

    perm, valid = cross_permutation(batch["subject"])
    rows = valid.nonzero().flatten()
    if not len(rows):
        return None
    dev = batch["src"].device
    src = batch["src"].detach().cpu()
    slm, dlm = batch["src_landmarks"].detach().cpu().double().numpy(), batch["drv_landmarks"].detach().cpu().double().numpy()
    rings = BorderRings(canonical_triangles(), src.shape[-1], src.shape[-2], size=len(rows))  # a source, several rows
    warps = []
    for i in rows.tolist():
        j = int(perm[i])
        tgt = relative_targets(slm[j, :468], dlm[i, :468], slm[i, :468])
        warps.append(_sample_warp(src[j], slm[j, :468], tgt, ring=rings(slm[j, :468])))
    warped, flows, points = (torch.stack(x) for x in zip(*warps, strict=True))
    return rows.to(dev), perm[rows].to(dev), (warped.float() / 255.0).to(dev), flows.to(dev), points.to(dev)


def collate_pairs(items: list[dict]) -> dict:
    """DataLoader ``collate_fn`` of the warp-guided stage's cross-identity term: ``default_collate`` of the pairs
    plus :func:`cross_warp` of the batch under :data:`CROSS_KEYS` (``cross_rows``, ``cross_sources``,
    ``cross_warped``, ``cross_flow``, ``cross_points``; R = 0 rows when the batch has one subject). It runs where
    the DataLoader collates — in its worker processes when ``num_workers`` > 0 — so the mesh warps (~10 ms a row
    at 128²) stay off the training step.
    """
    batch = torch.utils.data.default_collate(items)
    x = cross_warp(batch)
    if x is None:
        h, w = batch["src"].shape[-2:]
        x = (torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long), torch.zeros(0, 3, h, w),
             torch.zeros(0, 2, h, w), torch.zeros(0, 468, 2))
    batch.update(zip(CROSS_KEYS, x, strict=True))
    return batch


class ReenactDataModule(pl.LightningDataModule):
    """Training and validation pairs from prepared datasets (``mien prepare`` shards).

    Args:
        root: dataset root (folder or fsspec URL).
        val_root: a separately prepared dataset of held-out subjects (validation); None: the last
            ``ceil(val_fraction · subjects)`` subjects of ``root`` (:func:`mien.data.datamodule.subject_split`).
        val_fraction: see ``val_root``; batch_size, num_workers: DataLoader; pairs_per_clip: pairs per clip and
            pass (validation: ``val_pairs_per_clip``); min_gap: smallest frame distance of a pair; flip_p: flip
            probability; buffer: shuffle buffer; seed; warp: add each pair's mesh warp (:func:`add_warp`; needed
            by the ``warpguided`` stage of the task); cross: add the batch's cross-identity warps in the loader
            (:func:`collate_pairs`; needed by the ``warpguided`` stage with ``weights.cross`` > 0).
    """

    def __init__(self, root: str, val_root: str | None = None, val_fraction: float = 0.2, batch_size: int = 8,
                 num_workers: int = 0, pairs_per_clip: int = 8, val_pairs_per_clip: int = 2, min_gap: int = 5,
                 flip_p: float = 0.5, buffer: int = 256, seed: int = 0, warp: bool = False,
                 cross: bool = False):
        super().__init__()
        self.save_hyperparameters()
        self.train_urls: list[str] = []
        self.val_urls: list[str] = []
        self.crop_contract: str | None = None

    def setup(self, stage: str | None = None) -> None:
        h = self.hparams
        if h.val_root:
            self.train_urls, self.val_urls = shard_urls(h.root), shard_urls(h.val_root)
        else:
            self.train_urls, self.val_urls = subject_split(h.root, h.val_fraction)
        align = open_dataset(h.root).manifest.get("feature_extractors", {}).get("alignment", {})
        #: crop contract of the shards; the task checks the model's against it
        self.crop_contract = f"aligned-ffhq-{float(align.get('margin', 0.0))}"

    def train_dataloader(self):
        h = self.hparams
        ds = PairDataset(self.train_urls, h.pairs_per_clip, h.min_gap, True, h.flip_p, h.buffer, h.seed, h.warp)
        return torch.utils.data.DataLoader(ds, batch_size=h.batch_size, num_workers=h.num_workers, drop_last=True,
                                           collate_fn=collate_pairs if h.cross else None)

    def val_dataloader(self):
        h = self.hparams
        if not self.val_urls:
            return []
        ds = PairDataset(self.val_urls, h.val_pairs_per_clip, h.min_gap, False, 0.0, 0, h.seed, h.warp)
        return torch.utils.data.DataLoader(ds, batch_size=h.batch_size, num_workers=h.num_workers,
                                           collate_fn=collate_pairs if h.cross else None)
