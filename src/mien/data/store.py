"""Dataset storage on local folders or any fsspec URL: layout, atomic writes, input expansion.

Layout of a dataset root::

    manifest.json          schema version, settings, feature extractor versions, shard list with counts/hashes
    index.parquet          one row per sample
    report.json            prepared, failed (with reasons) and rejected-window counts of the last run
    shards/<vid>-NNNN.tar  WebDataset shards, one group per source video
    done/<vid>.json        per-video completion marker (written after its shards): resumable runs

What the files hold is defined in :mod:`mien.data.schema`.

Every file is written to a temporary name and renamed when complete (``fs.mv`` for remote stores).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import fsspec

TMP_TAG = ".tmp-"


def get_fs(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """(filesystem, path without protocol) of a local path or fsspec URL."""
    fs, path = fsspec.core.url_to_fs(str(url))
    return fs, path.rstrip("/") or path


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    return "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))


def join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *parts])


def video_key(uri: str) -> str:
    """Stable key of a source video: sanitised stem + 10 hex digits of SHA-1 of its URI (no dots)."""
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", Path(uri.split("://")[-1]).stem)[:40].strip("-") or "video"
    return f"{stem}-{hashlib.sha1(uri.encode()).hexdigest()[:10]}"


def expand_sources(specs: list[str]) -> list[str]:
    """Expand local paths, folders (non-recursive), globs and fsspec URLs (with globs) into a sorted list.

    Folders contribute their video files; a spec that matches nothing is kept as is (reported as bad later).
    Remote files are returned as full URLs (``memory://…``, ``s3://…``).
    """
    from mien.io.video import VIDEO_SUFFIXES, expand_inputs

    out: list[str] = []
    for s in map(str, specs):
        if "://" not in s or s.startswith("file://"):
            s = s.removeprefix("file://")
            if os.path.isdir(s):
                out.extend(str(p) for p in sorted(Path(s).iterdir())
                           if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
            else:
                out.extend(expand_inputs([s]))
            continue
        fs, path = fsspec.core.url_to_fs(s)
        if any(c in path for c in "*?["):
            found = sorted(fs.glob(path))
        elif fs.isdir(path):
            found = sorted(p for p in fs.ls(path, detail=False) if Path(p).suffix.lower() in VIDEO_SUFFIXES)
        else:
            found = [path]
        out.extend(fs.unstrip_protocol(p) for p in found) if found else out.append(s)
    seen: set[str] = set()
    return [s for s in out if not (s in seen or seen.add(s))]


@contextlib.contextmanager
def local_copy(uri: str) -> Iterator[str]:
    """A local path of ``uri``: the file itself when local, else a temporary download (deleted after)."""
    if "://" not in uri or uri.startswith("file://"):
        yield uri.removeprefix("file://")
        return
    fs, path = fsspec.core.url_to_fs(uri)
    with tempfile.TemporaryDirectory(prefix="mien-src-") as d:
        local = os.path.join(d, "src" + Path(path).suffix)
        fs.get(path, local)
        yield local


@contextlib.contextmanager
def atomic_target(fs: fsspec.AbstractFileSystem, dest: str) -> Iterator[str]:
    """Yield a local temporary file path; on success it becomes ``dest`` on ``fs`` atomically.

    Local stores: the temporary file lies beside ``dest`` (``.name.tmp-<uuid>``) and is renamed.
    Remote stores: it is uploaded to ``dest.tmp-<uuid>`` and moved (``fs.mv``) onto ``dest``.
    On failure nothing is left at ``dest``.
    """
    parent, name = dest.rsplit("/", 1) if "/" in dest else ("", dest)
    tmp_name = f".{name}{TMP_TAG}{uuid.uuid4().hex[:8]}"
    if is_local(fs):
        os.makedirs(parent or ".", exist_ok=True)
        tmp = os.path.join(parent, tmp_name)
        try:
            yield tmp
            os.replace(tmp, dest)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return
    with tempfile.TemporaryDirectory(prefix="mien-out-") as d:
        local = os.path.join(d, name)
        yield local
        remote_tmp = f"{parent}/{tmp_name}" if parent else tmp_name
        if parent:
            fs.makedirs(parent, exist_ok=True)
        fs.put(local, remote_tmp)
        try:
            fs.mv(remote_tmp, dest)
        finally:
            if fs.exists(remote_tmp):
                fs.rm(remote_tmp)


def write_json(fs: fsspec.AbstractFileSystem, dest: str, obj) -> None:
    """Atomically write ``obj`` as indented JSON."""
    with atomic_target(fs, dest) as tmp, open(tmp, "w") as f:
        json.dump(obj, f, indent=2, default=_jsonable)


def read_json(fs: fsspec.AbstractFileSystem, path: str):
    with fs.open(path, "r") as f:
        return json.load(f)


def json_roundtrip(obj):
    """``obj`` as it reads back from JSON (tuples → lists), for comparing with stored JSON."""
    return json.loads(json.dumps(obj, default=_jsonable))


def _jsonable(o):
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def remove_temporaries(fs: fsspec.AbstractFileSystem, folder: str, prefix: str = "") -> int:
    """Delete leftover temporary files (``.*.tmp-*``) of killed runs in ``folder``; returns how many."""
    if not fs.exists(folder):
        return 0
    n = 0
    for p in fs.ls(folder, detail=False):
        name = p.rsplit("/", 1)[-1]
        if name.startswith("." + prefix) and TMP_TAG in name:
            fs.rm(p)
            n += 1
    return n
