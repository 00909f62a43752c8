"""Reading prepared datasets back: manifest/index, numpy samples, and :class:`ClipDataset` (PyTorch).

Shards are read by the one reader pipeline of :mod:`mien.data.shards` (WebDataset's tar expander, key grouping
and node/worker splitters, opened through fsspec), so a dataset root may be a local folder or any fsspec URL
(``s3://…``, ``gs://…``, ``memory://…``); damaged shards are reported, never skipped silently.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass

from mien.data import shards, store
from mien.data.shards import decode_sample
from mien.errors import InputError


@dataclass
class DatasetInfo:
    """A prepared dataset's root, manifest (dict) and index (pandas DataFrame, one row per sample)."""

    root: str
    manifest: dict
    index: object


def open_dataset(root: str) -> DatasetInfo:
    """Read ``manifest.json`` and ``index.parquet`` of a dataset root.

    Raises:
        InputError: ``root`` has no manifest (not a prepared dataset, or preparation never finished).
    """
    import pyarrow.parquet as pq

    fs, path = store.get_fs(root)
    mpath = store.join(path, "manifest.json")
    if not fs.exists(mpath):
        raise InputError(root, "no manifest.json (not a mien dataset, or `mien prepare` did not finish)")
    manifest = store.read_json(fs, mpath)
    with fs.open(store.join(path, "index.parquet"), "rb") as f:
        index = pq.read_table(f).to_pandas()
    return DatasetInfo(str(root), manifest, index)


def shard_urls(root: str) -> list[str]:
    """Full URLs (or local paths) of the shards listed in the manifest, in manifest order.

    Raises:
        InputError: ``root`` has no manifest.
    """
    return shards.shard_urls(root, open_dataset(root).manifest)


def iter_samples(root_or_urls: str | list[str], decode: bool = True, video: bool = True, audio: bool = True,
                 node: tuple[int, int] | None = None, worker: tuple[int, int] | None = None) -> Iterator[dict]:
    """Samples of a dataset as numpy (no torch needed).

    Args:
        root_or_urls: dataset root (shards from its manifest) or a list of shard URLs.
        decode: decode members (else raw bytes per member).
        video, audio: decode ``mp4`` to RGB uint8 (T, S, S, 3) and ``flac`` to float32 (N,) (else bytes).
        node, worker: (rank, count) — keep every count-th shard starting at rank (node split, then worker
            split), so that all (node, worker) pairs together read every sample exactly once. None: no split.

    Yields:
        dict with ``__key__``, ``__url__`` and one entry per member (see :mod:`mien.data.schema`). Samples of
        a damaged shard that cannot be read are skipped with a
        :class:`~mien.data.shards.DamagedShardWarning` naming the shard and the count lost.
    """
    urls = shard_urls(root_or_urls) if isinstance(root_or_urls, str) else list(root_or_urls)
    for raw in shards.raw_pipeline(urls, node=node, worker=worker):
        yield decode_sample(raw, video=video, audio=audio) if decode else raw


def _to_tensors(sample: dict) -> dict:
    """Decoded numpy sample → torch: video (T, 3, H, W) uint8, arrays as tensors, json kept as dict."""
    import numpy as np
    import torch

    out = {"__key__": sample["__key__"]}
    for k, v in sample.items():
        if k.startswith("__"):
            continue
        name = k.removesuffix(".npy")
        if k == "mp4":
            out["video"] = torch.from_numpy(np.ascontiguousarray(v)).permute(0, 3, 1, 2).contiguous()
        elif k == "flac":
            if isinstance(v, (bytes, bytearray)):  # audio=False: left undecoded, not returned
                continue
            out["audio"] = torch.from_numpy(np.ascontiguousarray(v, np.float32))
        elif k == "json":
            out["meta"] = v
        else:
            out[name] = torch.from_numpy(np.ascontiguousarray(v))
    return out


def _decode_to_tensors(raw: dict, audio: bool = True) -> dict:
    return _to_tensors(decode_sample(raw, audio=audio))


def _key_filter(sample: dict, keys: frozenset, keep: bool) -> bool:
    return (sample["__key__"] in keys) == keep


def ClipDataset(root_or_urls: str | list[str], shuffle_shards: bool = False, seed: int = 0,
                split_nodes: bool = True, split_workers: bool = True, audio: bool = True,
                only_keys=None, exclude_keys=None):
    """A PyTorch ``IterableDataset`` (WebDataset ``DataPipeline``) of prepared clips as tensors.

    Each item: ``video`` uint8 (T, 3, H, W) RGB; ``landmarks`` float32 (T, 478, 3) crop px; ``affine``
    float32 (T, 2, 3) source px → crop px; ``pose`` float32 (T, 6) (yaw, pitch, roll deg, tx, ty, tz mm);
    ``openness`` float32 (T, 3); ``times`` float64 (T, 2) s; when the clip has audio ``audio`` float32 (N,)
    16 kHz mono with N = round(T / fps · 16000), ``logmel`` float32 (T, 80), ``mfcc`` float32 (T, 13);
    ``meta`` dict; ``__key__``; ``au`` float32 (T, A) for clips with AU labels. Shards are split across nodes
    (``torch.distributed`` rank / world size, or the RANK/WORLD_SIZE environment) and DataLoader workers with
    WebDataset's splitters, so every sample is read once per epoch overall; a damaged shard's unreadable samples
    are skipped with one :class:`~mien.data.shards.DamagedShardWarning` per shard.

    Args:
        root_or_urls: dataset root (local folder or fsspec URL) or a list of shard URLs.
        shuffle_shards: shuffle the shard order (seeded by ``seed``) before splitting.
        split_nodes, split_workers: apply WebDataset's node / worker splitters.
        audio: decode audio.
        only_keys, exclude_keys: keep only / drop the samples with these ``__key__`` values (before decoding).

    Raises:
        ImportError: torch is not installed.
        InputError: the root is not a prepared dataset.
    """
    import random

    import torch  # noqa: F401  (required: the pipeline is a torch IterableDataset)
    import webdataset as wds

    urls = shard_urls(root_or_urls) if isinstance(root_or_urls, str) else list(root_or_urls)
    if shuffle_shards:
        urls = list(urls)
        random.Random(seed).shuffle(urls)
    stages = []
    if only_keys is not None:
        stages.append(wds.select(functools.partial(_key_filter, keys=frozenset(only_keys), keep=True)))
    if exclude_keys:
        stages.append(wds.select(functools.partial(_key_filter, keys=frozenset(exclude_keys), keep=False)))
    stages.append(wds.map(functools.partial(_decode_to_tensors, audio=audio)))  # picklable: spawn workers
    return shards.raw_pipeline(urls, node="auto" if split_nodes else None, worker="auto" if split_workers else None,
                               stages=stages)
