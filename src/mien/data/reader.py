"""Reading prepared datasets back: manifest/index, numpy samples, and :class:`ClipDataset` (PyTorch).

Shards are read with WebDataset's tar expander and key grouping, opened through fsspec, so a dataset root may
be a local folder or any fsspec URL (``s3://…``, ``gs://…``, ``memory://…``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import islice

from mien.data import store
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
    """Full URLs (or local paths) of the shards listed in the manifest, in manifest order."""
    info = open_dataset(root)
    fs, path = store.get_fs(root)
    return [_url(fs, store.join(path, "shards", s["name"])) for s in info.manifest["shards"]]


def _url(fs, path: str) -> str:
    return path if store.is_local(fs) else fs.unstrip_protocol(path)


def _fsspec_opener(src: Iterator[dict]) -> Iterator[dict]:
    """WebDataset stage: {"url"} → {"url", "stream"} opened with fsspec."""
    import fsspec

    for sample in src:
        url = sample["url"]
        with fsspec.open(url, "rb") as stream:
            yield dict(sample, stream=stream)


def _split(rank: int | None, world: int | None) -> Callable:
    def stage(src):
        if rank is None or not world or world <= 1:
            yield from src
        else:
            yield from islice(src, rank, None, world)

    return stage


def _raw_samples(urls: list[str], node: tuple[int, int] | None, worker: tuple[int, int] | None) -> Iterator[dict]:
    from webdataset import tariterators as ti

    shards = ({"url": u} for u in urls)
    if node is not None:
        shards = _split(*node)(shards)
    if worker is not None:
        shards = _split(*worker)(shards)
    yield from ti.group_by_keys(ti.tar_file_expander(_fsspec_opener(shards)))


def iter_samples(root_or_urls: str | list[str], decode: bool = True, video: bool = True, audio: bool = True,
                 node: tuple[int, int] | None = None, worker: tuple[int, int] | None = None) -> Iterator[dict]:
    """Samples of a dataset as numpy (no torch needed).

    Args:
        root_or_urls: dataset root (shards from its manifest) or a list of shard URLs.
        decode: decode members (else raw bytes per member).
        video, audio: decode ``mp4`` to RGB uint8 (T, S, S, 3) and ``flac`` to float32 (N,) (else bytes).
        node, worker: (rank, count) — keep every count-th shard starting at rank (node split, then worker
            split), so that all (node, worker) pairs together read every sample exactly once.

    Yields:
        dict with ``__key__``, ``__url__`` and one entry per member (see :mod:`mien.data.shards`).
    """
    urls = shard_urls(root_or_urls) if isinstance(root_or_urls, str) else list(root_or_urls)
    for raw in _raw_samples(urls, node, worker):
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
    ``meta`` dict; ``__key__``. Shards are split across nodes (``torch.distributed`` rank / world size, or the
    RANK/WORLD_SIZE environment) and DataLoader workers, so every sample is read once per epoch overall.

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
    from webdataset import tariterators as ti

    urls = shard_urls(root_or_urls) if isinstance(root_or_urls, str) else list(root_or_urls)
    if shuffle_shards:
        urls = list(urls)
        random.Random(seed).shuffle(urls)
    stages = [wds.SimpleShardList(urls)]
    if split_nodes:
        stages.append(wds.split_by_node)
    if split_workers:
        stages.append(wds.split_by_worker)
    stages += [_fsspec_opener, ti.tar_file_expander, ti.group_by_keys]
    if only_keys is not None:
        stages.append(wds.select(functools.partial(_key_filter, keys=frozenset(only_keys), keep=True)))
    if exclude_keys:
        stages.append(wds.select(functools.partial(_key_filter, keys=frozenset(exclude_keys), keep=False)))
    stages.append(wds.map(functools.partial(_decode_to_tensors, audio=audio)))  # picklable: spawn workers
    return wds.DataPipeline(*stages)
