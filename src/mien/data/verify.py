"""Checking a prepared dataset's shards against its manifest (``mien dataset verify``)."""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass, field

from mien.data import schema, shards, store


@dataclass
class ShardCheck:
    """Outcome of checking one shard listed in the manifest.

    Attributes:
        name: shard file name (``<video key>-NNNN.tar``).
        video: video key of the samples it holds.
        problems: what differs from the manifest (empty: the shard is good): missing file, size, SHA-256,
            readable sample count.
        samples: complete samples read from the file (None when the file is missing).
    """

    name: str
    video: str
    problems: list[str] = field(default_factory=list)
    samples: int | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


def shard_video(entry: dict) -> str:
    """Video key of a manifest shard entry (the ``video`` field, else the name without ``-NNNN.tar``)."""
    return entry.get("video") or entry["name"].rsplit("-", 1)[0]


def verify_dataset(root: str, hashes: bool = True) -> list[ShardCheck]:
    """Check every shard in ``root``'s manifest: present, size in bytes, SHA-256 (when the manifest records it:
    datasets prepared before it did are checked by size and count only) and the number of complete samples.

    Args:
        root: dataset root (local folder or fsspec URL).
        hashes: also compare SHA-256 hashes (reads every byte).

    Returns:
        One :class:`ShardCheck` per manifest shard, in manifest order.

    Raises:
        InputError: ``root`` has no manifest.
    """
    from mien.data.reader import open_dataset

    manifest = open_dataset(root).manifest
    fs, path = store.get_fs(root)
    checker = functools.partial(shards.checked_samples, required=schema.required_members(manifest.get("kind")))
    out = []
    for entry in manifest["shards"]:
        p = store.join(path, "shards", entry["name"])
        check = ShardCheck(entry["name"], shard_video(entry))
        out.append(check)
        if not fs.exists(p):
            check.problems.append("missing")
            continue
        size = fs.size(p)
        if size != entry["bytes"]:
            check.problems.append(f"{size} bytes, manifest {entry['bytes']}")
        if hashes and entry.get("sha256") and shards.file_sha256(p, fs) != entry["sha256"]:
            check.problems.append("SHA-256 differs from the manifest")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", shards.DamagedShardWarning)
            n = sum(1 for _ in shards.raw_pipeline([shards.shard_url(fs, p)], node=None, worker=None,
                                                   checker=checker))
        check.samples = n
        if n != entry["samples"]:
            check.problems.append(f"{n} of {entry['samples']} samples readable")
    return out
