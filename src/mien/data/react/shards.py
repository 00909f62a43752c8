"""Dyadic datasets: one sample per dyad (two people, aligned frame by frame), written and read through
:mod:`mien.data.shards`' one writer and reader, and the training dataset :class:`~mien.data.react.dataset.DyadicDataset`.

Layout of a dyadic dataset root (local folder or fsspec URL)::

    manifest.json          kind "dyadic", schema version, members, fps, feature names, dyads (in order), shards
    appropriateness.npy    bool (2M, 2M) over the mirrored items (see below)
    index.parquet          one row per dyad: dyad, session, key, shard, frames, sources
    report.json            prepared / failed (with reasons) / resumed dyads of the last run
    shards/<key>-0000.tar  one WebDataset tar per dyad (members :data:`mien.data.schema.DYADIC_MEMBERS`)
    done/<key>.json        per-dyad completion marker (resumable runs)

Roles are mirrored as in the official REACT loaders: with M dyads (manifest order), item ``i < M`` is dyad i
with person ``a`` speaking and ``b`` listening, item ``i + M`` the same dyad with ``b`` speaking; row/column i
of ``appropriateness.npy`` is item i (``A[k, j]``: listener j's real reaction is appropriate for speaker k).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from mien.data import schema, shards, store
from mien.errors import InputError
from mien.metrics.react import REACT_ATTRIBUTES

DYADIC_MEMBERS = schema.DYADIC_MEMBERS
DYADIC_REQUIRED = schema.required_members("dyadic")
DYADIC_SCHEMA_VERSION = schema.DYADIC_SCHEMA_VERSION
INDEX_COLUMNS = ("dyad", "session", "key", "shard", "frames", "source_a", "source_b")


def dyad_key(session: str) -> str:
    """Shard key of a session: sanitised name + 10 hex digits of its SHA-1 (no dots)."""
    return store.video_key(session.replace("/", "-").replace("|", "--"))


def write_dyad(fs, root: str, session: str, a: dict, b: dict, times: np.ndarray, fps: float,
               attrs_source: str, feature_names: Sequence[str]) -> list[dict]:
    """Write one dyad as one shard tar (atomic), returning its :data:`~mien.data.schema.SHARD_FIELDS` parts.

    Args:
        fs, root: the dataset's fsspec filesystem and root path. session: the dyad's name.
        a, b: per person ``{"features": (T, D) float32, "attrs": (T, 25) float32, "source": str}``.
        times: (T,) s. fps: frame rate. attrs_source: "react-csv" or "mien". feature_names: the D column names.

    Raises:
        ValueError: shapes disagree.
    """
    key = dyad_key(session)
    t = len(times)
    for p, who in ((a, "a"), (b, "b")):
        if p["features"].shape != (t, len(feature_names)) or p["attrs"].shape != (t, len(REACT_ATTRIBUTES)):
            raise ValueError(f"person {who}: features {p['features'].shape} / attrs {p['attrs'].shape} do not "
                             f"match T={t}, D={len(feature_names)}, 25")
    meta = {"schema_version": DYADIC_SCHEMA_VERSION, "session": session, "key": key, "fps": float(fps),
            "frames": t, "source_a": a["source"], "source_b": b["source"], "attrs_source": attrs_source,
            "feature_names": list(feature_names)}
    sample = {"__key__": key, "times.npy": np.asarray(times, np.float64), "json": meta}
    for p, who in ((a, "a"), (b, "b")):
        sample[f"{who}.features.npy"] = np.asarray(p["features"], np.float32)
        sample[f"{who}.attrs.npy"] = np.asarray(p["attrs"], np.float32)
    w = shards.ShardWriter(fs, root, key, max_samples=1)
    try:
        w.write(shards.encode_sample(sample))
    except BaseException:
        w.abort()
        raise
    return w.close()


def finalize(root: str, sessions: Sequence[str], appropriateness: np.ndarray | None, settings: dict,
             report: dict) -> dict:
    """Write ``manifest.json``, ``index.parquet``, ``appropriateness.npy`` and ``report.json`` from the done
    markers of ``sessions`` (their order is the dyad order; sessions without an "ok" marker are left out).

    Args:
        appropriateness: bool (2M, 2M) over the mirrored items of the kept dyads, or None: then
            :func:`appropriateness_from_speakers` on the dyads' mean attributes.

    Returns:
        The manifest.

    Raises:
        ValueError: no dyad was prepared, feature names differ between dyads, or the matrix is not (2M, 2M).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    fs, path = store.get_fs(root)
    markers = []
    for s in sessions:
        mp = store.join(path, "done", f"{dyad_key(s)}.json")
        if fs.exists(mp):
            m = store.read_json(fs, mp)
            if m.get("status") == "ok":
                markers.append(m)
    if not markers:
        raise ValueError(f"{root}: no dyad was prepared")
    names = markers[0]["feature_names"]
    bad = [m["session"] for m in markers if m["feature_names"] != names]
    if bad:
        raise ValueError(f"{root}: dyads {bad[:3]} have other feature columns than {markers[0]['session']}")
    m2 = 2 * len(markers)
    if appropriateness is None:
        means = [m["mean_attrs_a"] for m in markers] + [m["mean_attrs_b"] for m in markers]
        appropriateness = appropriateness_from_speakers(np.array(means, dtype=np.float64))
        approp_source = "speaker similarity (appropriateness_from_speakers)"
    else:
        approp_source = "given"
    appropriateness = np.asarray(appropriateness, bool)
    if appropriateness.shape != (m2, m2):
        raise ValueError(f"appropriateness matrix {appropriateness.shape} must be ({m2}, {m2}) for {len(markers)} "
                         "dyads (both roles)")
    with store.atomic_target(fs, store.join(path, "appropriateness.npy")) as tmp, open(tmp, "wb") as f:
        np.save(f, appropriateness, allow_pickle=False)
    rows = [{"dyad": i, "session": m["session"], "key": m["key"], "shard": m["shards"][0]["name"],
             "frames": m["frames"], "source_a": m["source_a"], "source_b": m["source_b"]}
            for i, m in enumerate(markers)]
    table = pa.Table.from_pylist(rows, schema=pa.schema([
        ("dyad", pa.int64()), ("session", pa.string()), ("key", pa.string()), ("shard", pa.string()),
        ("frames", pa.int64()), ("source_a", pa.string()), ("source_b", pa.string())]))
    with store.atomic_target(fs, store.join(path, "index.parquet")) as tmp:
        pq.write_table(table, tmp)
    manifest = {"kind": "dyadic", "schema_version": DYADIC_SCHEMA_VERSION,
                "members": {m.name: m.description for m in DYADIC_MEMBERS}, "attributes": list(REACT_ATTRIBUTES),
                "fps": markers[0]["fps"], "feature_names": names, "dyads": [m["session"] for m in markers],
                "items": m2, "appropriateness": {"file": "appropriateness.npy", "source": approp_source},
                "attrs_source": sorted({m["attrs_source"] for m in markers}), "settings": settings,
                "shards": [p for m in markers for p in m["shards"]]}
    store.write_json(fs, store.join(path, "manifest.json"), manifest)
    store.write_json(fs, store.join(path, "report.json"), report)
    return manifest


def appropriateness_from_speakers(mean_attrs: np.ndarray, quantile: float = 0.2) -> np.ndarray:
    """Appropriateness of listener reactions between items by speaker similarity (for datasets without the
    challenge's matrix): ``A[k, j]`` when j = k or the distance between the speakers' time-averaged attributes
    (dimensions finite for both, RMS) is at most the ``quantile`` of all off-diagonal distances.

    Follows the REACT definition (listener j's reaction is appropriate for speaker k when speaker j behaves
    like speaker k) with a simple distance, not the organisers' clustering.

    Args:
        mean_attrs: (N, 25) float, NaN allowed. quantile: share of off-diagonal pairs considered similar.

    Returns:
        bool (N, N), True on the diagonal.
    """
    x = np.asarray(mean_attrs, np.float64)
    n = len(x)
    ok = np.isfinite(x)
    diff = np.where(ok[:, None] & ok[None], x[:, None] - x[None], 0.0)
    cnt = (ok[:, None] & ok[None]).sum(-1)
    d = np.sqrt((diff ** 2).sum(-1) / np.maximum(cnt, 1))
    d[cnt == 0] = np.inf
    a = np.eye(n, dtype=bool)
    off = d[~np.eye(n, dtype=bool)]
    if n > 1 and np.isfinite(off).any():
        a |= d <= np.quantile(off[np.isfinite(off)], quantile)
    return a


# --------------------------------------------------------------------------------------------- reading
def _resolve(root_or_urls) -> tuple[list[str], dict, str]:
    if isinstance(root_or_urls, (str, os.PathLike)):
        root = os.fspath(root_or_urls)
        fs, path = store.get_fs(root)
        mp = store.join(path, "manifest.json")
        if not fs.exists(mp):
            raise InputError(root, "no manifest.json: not a prepared dyadic dataset (mien prepare --mode dyadic)")
        manifest = store.read_json(fs, mp)
        urls = shards.shard_urls(root, manifest)
    else:
        urls = [os.fspath(u) for u in root_or_urls]
        if not urls:
            raise ValueError("no shard URLs given")
        root = urls[0].rsplit("/", 2)[0]
        fs, path = store.get_fs(root)
        manifest = store.read_json(fs, store.join(path, "manifest.json"))
    if manifest.get("kind") != "dyadic":
        raise InputError(root, f"dataset kind is {manifest.get('kind', 'clips')!r}, not 'dyadic'")
    return urls, manifest, root


def _columns(names: list[str], features: Sequence[str] | None) -> list[int]:
    if features is None:
        return list(range(len(names)))
    groups = {n.split(":", 1)[0] for n in names}
    bad = [f for f in features if f not in groups]
    if bad:
        raise ValueError(f"features {bad} are not in this dataset; it has {sorted(groups)}")
    return [i for f in features for i, n in enumerate(names) if n.split(":", 1)[0] == f]


def speaker_feature_names(root: str, features: Sequence[str] | None = None) -> list[str]:
    """Column names (``group:name``) of the ``speaker`` arrays :class:`DyadicDataset` yields for ``features``
    (feature groups, :data:`mien.data.react.features.FEATURE_GROUPS`; None: all stored)."""
    _, manifest, _ = _resolve(root)
    names = manifest["feature_names"]
    return [names[i] for i in _columns(names, features)]


def load_appropriateness(root: str) -> np.ndarray:
    """The dataset's appropriateness matrix: bool (2M, 2M) over the mirrored items (module docstring).

    Raises:
        InputError: missing file or a matrix whose size is not twice the dyad count.
    """
    _, manifest, root = _resolve(root)
    fs, path = store.get_fs(root)
    mp = store.join(path, "appropriateness.npy")
    if not fs.exists(mp):
        raise InputError(mp, "missing appropriateness matrix")
    with fs.open(mp, "rb") as f:
        a = np.load(f, allow_pickle=False)
    n = 2 * len(manifest["dyads"])
    if a.shape != (n, n):
        raise InputError(mp, f"appropriateness matrix is {a.shape}, expected ({n}, {n}) (2 × dyads)")
    return a.astype(bool)
