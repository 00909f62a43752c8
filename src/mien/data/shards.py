"""Shard files (WebDataset tars): the writer, the reader pipeline and the shard-URL builder.

The members and metadata of a sample are defined in :mod:`mien.data.schema`. The writer puts one video's
samples into ``shards/<video key>-NNNN.tar`` parts, each written to a temporary name and renamed when complete,
recording each part's sample count, size and SHA-256. The reader expands tars with WebDataset's tar expander
and key grouping (opened through fsspec, so a root may be a local folder or any fsspec URL), splits shards
across nodes and DataLoader workers with WebDataset's own splitters, and never drops a sample silently: a
damaged shard (truncated, unreadable) or an incomplete sample is skipped with one :class:`DamagedShardWarning`
per shard naming it and the number of samples lost.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import warnings
from collections.abc import Callable, Iterable, Iterator

import numpy as np

from mien.data import schema, store


class DamagedShardWarning(UserWarning):
    """A shard could not be read completely; its message names the shard and the samples lost."""


# ------------------------------------------------------------------------------------------ encoding
def npy_bytes(a: np.ndarray) -> bytes:
    """``a`` as ``.npy`` file bytes (C order, no pickle)."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(a), allow_pickle=False)
    return buf.getvalue()


def encode_sample(sample: dict) -> dict:
    """Sample dict (arrays, bytes, a ``json`` dict) → member bytes for a tar writer (``__key__`` kept)."""
    out = {"__key__": sample["__key__"]}
    for k, v in sample.items():
        if k == "__key__" or v is None:
            continue
        if k.endswith(".npy"):
            out[k] = npy_bytes(v)
        elif k == "json":
            out[k] = json.dumps(v, sort_keys=True).encode()
        else:
            out[k] = bytes(v)
    return out


def decode_member(name: str, data: bytes, video: bool = True, audio: bool = True):
    """Decode one member to numpy: npy → array, json → dict, mp4 → uint8 (T, S, S, 3) RGB,
    flac → float32 (S,). With ``video``/``audio`` False those stay raw bytes."""
    if name.endswith(".npy"):
        return np.load(io.BytesIO(data), allow_pickle=False)
    if name == "json":
        return json.loads(data)
    if name == "mp4" and video:
        return decode_mp4(data)
    if name == "flac" and audio:
        from mien.data.audio import read_flac

        return read_flac(data)[0]
    return data


def decode_mp4(data: bytes) -> np.ndarray:
    """All frames of an in-memory MP4 as RGB uint8 (T, H, W, 3)."""
    import av

    with av.open(io.BytesIO(data)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    return np.stack(frames) if frames else np.zeros((0, 0, 0, 3), np.uint8)


def decode_sample(raw: dict, video: bool = True, audio: bool = True) -> dict:
    """Raw WebDataset sample (``__key__``, member bytes) → decoded dict (see :func:`decode_member`)."""
    out = {}
    for k, v in raw.items():
        out[k] = v if k.startswith("__") else decode_member(k, v, video=video, audio=audio)
    return out


# -------------------------------------------------------------------------------------------- writer
class ShardWriter:
    """Writes one video's samples to ``<root>/shards/<video key>-NNNN.tar`` parts of at most ``max_samples``.

    Each part is written to a temporary name and renamed when complete (:func:`mien.data.store.atomic_target`).
    :meth:`close` returns the parts as :data:`mien.data.schema.SHARD_FIELDS` dicts (name, samples, bytes,
    video, sha256).
    """

    def __init__(self, fs, root: str, vkey: str, max_samples: int):
        self.fs, self.root, self.vkey, self.max = fs, root, vkey, max_samples
        self.parts: list[dict] = []
        self._ctx = None
        self._writer = None
        self._count = 0

    def _open(self) -> None:
        self._name = f"{self.vkey}-{len(self.parts):04d}.tar"
        self._ctx = store.atomic_target(self.fs, store.join(self.root, "shards", self._name))
        self._tmp = self._ctx.__enter__()
        self._writer = _TarWriter(self._tmp)
        self._count = 0

    def write(self, sample: dict) -> str:
        """Write one encoded sample (:func:`encode_sample`); returns the shard file name it went to."""
        if self._writer is None:
            self._open()
        self._writer.write(sample)
        self._count += 1
        name = self._name
        if self._count >= self.max:
            self._close()
        return name

    def _close(self) -> None:
        if self._writer is None:
            return
        self._writer.close()
        size = os.path.getsize(self._tmp)
        digest = file_sha256(self._tmp)
        self._ctx.__exit__(None, None, None)
        self.parts.append(dict(zip(schema.SHARD_FIELDS, (self._name, self._count, size, self.vkey, digest),
                                   strict=True)))
        self._writer = self._ctx = None

    def close(self) -> list[dict]:
        self._close()
        return self.parts

    def abort(self) -> None:
        """Drop the part being written (nothing is left under its name)."""
        if self._writer is not None:
            self._writer.close()
            self._ctx.__exit__(RuntimeError, RuntimeError("aborted"), None)
            self._writer = self._ctx = None


class _TarWriter:
    """The tar layout of ``webdataset.TarWriter(path, encoder=False, mtime=0.0)`` byte for byte (PAX, members
    ``<key>.<member>`` in sorted order, mode 0444, owner bigdata, mtime 0), written with :mod:`tarfile`:
    importing webdataset imports torch, seconds per prepare worker process for nothing."""

    def __init__(self, path: str):
        import tarfile

        self._tarfile = tarfile
        self._tar = tarfile.open(path, mode="w|")  # default (PAX) format, as webdataset

    def write(self, sample: dict) -> None:
        key = sample["__key__"]
        for k in sorted(sample):
            if k.startswith("_"):
                continue
            v = sample[k]
            ti = self._tarfile.TarInfo(f"{key}.{k}")
            ti.size, ti.mtime, ti.mode, ti.uname, ti.gname = len(v), 0.0, 0o444, "bigdata", "bigdata"
            self._tar.addfile(ti, io.BytesIO(v))

    def close(self) -> None:
        self._tar.close()


def file_sha256(path: str, fs=None) -> str:
    """Hex SHA-256 of a file (local path, or a path on the fsspec filesystem ``fs``)."""
    h = hashlib.sha256()
    with (fs.open(path, "rb") if fs is not None else open(path, "rb")) as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ------------------------------------------------------------------------------------------- reading
def shard_url(fs, path: str) -> str:
    """The URL a reader opens for the shard at ``path`` on ``fs`` (a plain path on local stores)."""
    return path if store.is_local(fs) else fs.unstrip_protocol(path)


def shard_urls(root: str, manifest: dict | None = None) -> list[str]:
    """Full URLs (or local paths) of the shards listed in a dataset's manifest, in manifest order."""
    fs, path = store.get_fs(root)
    if manifest is None:
        manifest = store.read_json(fs, store.join(path, "manifest.json"))
    return [shard_url(fs, store.join(path, "shards", s["name"])) for s in manifest["shards"]]


def _expected_counts(urls: Iterable[str]) -> dict[str, int]:
    """{url: samples the manifest lists} for shards under ``<root>/shards/`` of a dataset with a manifest."""
    out: dict[str, int] = {}
    roots: dict[str, dict] = {}
    for u in urls:
        root = u.rsplit("/", 2)[0] if u.count("/") >= 2 else ""
        if root not in roots:
            roots[root] = {}
            try:
                fs, p = store.get_fs(root)
                mp = store.join(p, "manifest.json")
                if root and fs.exists(mp):
                    roots[root] = {s["name"]: s["samples"] for s in store.read_json(fs, mp)["shards"]}
            except Exception:  # no manifest reachable: counts unknown, damage still reported
                pass
        n = roots[root].get(u.rsplit("/", 1)[-1])
        if n is not None:
            out[u] = n
    return out


def _fsspec_open(url: str) -> Iterator[dict]:
    import fsspec

    with fsspec.open(url, "rb") as stream:
        yield {"url": url, "stream": stream}


def checked_samples(shards: Iterable[dict], required: frozenset[str] = schema.REQUIRED_MEMBERS) -> Iterator[dict]:
    """WebDataset stage: ``{"url"[, "expected"]}`` shard dicts → complete raw samples (``__key__``, ``__url__``,
    member bytes), shard by shard.

    A read error ends that shard (WebDataset's ``handler`` records it); a sample lacking a ``required`` member
    (default the clip kind's :data:`mien.data.schema.REQUIRED_MEMBERS`) is skipped. Either way one :class:`DamagedShardWarning` per
    shard names it, the error, the samples read and — when the manifest's count is known — how many were lost.
    """
    from webdataset import tariterators as ti

    for shard in shards:
        url, expected = shard["url"], shard.get("expected")
        errors: list[Exception] = []

        def handler(exn: Exception, errors=errors) -> bool:
            errors.append(exn)
            return False  # stop this shard: what follows a damaged tar member is not trustworthy

        good = incomplete = 0
        samples = ti.group_by_keys(ti.tar_file_expander(_fsspec_open(url), handler=handler), handler=handler)
        for s in samples:
            if not required.issubset(s):
                incomplete += 1
                continue
            good += 1
            yield s
        lost = max(0, expected - good) if expected is not None else None
        if errors or incomplete or lost:
            why = (f"{type(errors[0]).__name__}: {str(errors[0].args[0]) if errors[0].args else ''}"
                   if errors else "incomplete samples")
            count = (f"{lost} of {expected} samples lost" if lost is not None
                     else f"{good} samples read, {incomplete} incomplete skipped, the rest unknown")
            warnings.warn(f"damaged shard {url}: {count} ({why.split(' @ ')[0][:200]}); "
                          "run `mien dataset verify` on the dataset", DamagedShardWarning, stacklevel=2)


def _rank_split(rank: int, count: int) -> Callable:
    """Explicit split stage: every ``count``-th shard starting at ``rank``."""
    from itertools import islice

    def stage(src):
        yield from (islice(src, rank, None, count) if count > 1 else src)

    return stage


def raw_pipeline(urls: list[str], node="auto", worker="auto", stages: Iterable[Callable] = (),
                 checker: Callable = checked_samples):
    """WebDataset ``DataPipeline`` of complete raw samples of ``urls`` (see :func:`checked_samples`).

    Args:
        urls: shard URLs or local paths.
        node, worker: "auto" — WebDataset's ``split_by_node`` (``torch.distributed`` rank/world size or the
            RANK/WORLD_SIZE environment) / ``split_by_worker`` (DataLoader worker); None — no split;
            (rank, count) — keep every count-th shard starting at rank. All (node, worker) pairs together read
            every shard exactly once.
        stages: further pipeline stages applied to the raw samples (filters, decoding).
        checker: the stage that expands shards into complete samples (default :func:`checked_samples` with the
            clip kind's required members; other dataset kinds pass theirs, e.g. mien.data.react.shards).
    """
    import webdataset as wds

    expected = _expected_counts(urls)
    pipe: list = [wds.SimpleShardList(list(urls))]
    for split, auto in ((node, wds.split_by_node), (worker, wds.split_by_worker)):
        if split == "auto":
            pipe.append(auto)
        elif split is not None:
            pipe.append(_rank_split(*split))
    if expected:
        pipe.append(wds.map(functools.partial(_with_expected, expected=expected)))  # picklable: spawn workers
    pipe.append(checker)
    return wds.DataPipeline(*pipe, *stages)


def _with_expected(shard: dict, expected: dict[str, int]) -> dict:
    return dict(shard, expected=expected.get(shard["url"]))
