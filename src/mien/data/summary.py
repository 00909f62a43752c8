"""What a prepared dataset holds: counts, settings and shards (``mien dataset info``), and a seeded choice of
decoded samples for a contact sheet (``mien dataset show``, the app's Datasets tab)."""

from __future__ import annotations


def dataset_summary(root: str) -> dict:
    """Summary of a dataset made by ``mien prepare``.

    Returns:
        {"root", "schema_version", "mien_version", "samples", "videos", "subjects", "with_audio",
        "duration_sec" (s, sum of clip lengths), "settings" (clip_seconds, fps, crop_size, mode), "members",
        "au_names", "au_samples", "shards": [{"name", "samples", "bytes", "bytes_on_disk" (None: missing)}]};
        for a dyadic dataset (``mien prepare --mode dyadic``) {"root", "kind": "dyadic", "schema_version",
        "dyads", "items", "fps", "frames", "feature_columns", "feature_groups", "attrs_source",
        "appropriateness", "members", "shards"}.

    Raises:
        InputError: not a dataset (no readable manifest/index).
    """
    from mien.data import store
    from mien.data.reader import open_dataset

    info = open_dataset(root)
    m, df = info.manifest, info.index
    if m.get("kind") == "dyadic":
        return _dyadic_summary(root, m, df)
    dur = float((df["end_sec"] - df["start_sec"]).sum()) if len(df) else 0.0
    fs, path = store.get_fs(root)
    shard_dir = store.join(path, "shards")
    on_disk = ({e["name"].rsplit("/", 1)[-1]: e["size"] for e in fs.ls(shard_dir, detail=True)}
               if fs.exists(shard_dir) else {})
    return {
        "root": root, "schema_version": m["schema_version"], "mien_version": m.get("mien_version"),
        "samples": int(len(df)), "videos": int(df["video_key"].nunique()) if len(df) else 0,
        "subjects": int(df["subject_id"].nunique()) if len(df) else 0,
        "with_audio": int(df["has_audio"].sum()) if len(df) else 0, "duration_sec": round(dur, 3),
        "settings": {k: m["settings"][k] for k in ("clip_seconds", "fps", "crop_size", "mode")},
        "members": m.get("members", {}),
        "au_names": list(m.get("au_names") or []),
        "au_samples": int(df["has_au"].sum()) if len(df) and "has_au" in df.columns else 0,
        "shards": [{"name": s["name"], "samples": s["samples"], "bytes": s["bytes"],
                    "bytes_on_disk": on_disk.get(s["name"])} for s in m["shards"]],
    }


def _dyadic_summary(root: str, m: dict, df) -> dict:
    return {"root": root, "kind": "dyadic", "schema_version": m["schema_version"], "dyads": len(m["dyads"]),
            "items": m["items"], "fps": m["fps"], "frames": int(df["frames"].sum()) if len(df) else 0,
            "feature_columns": len(m["feature_names"]),
            "feature_groups": list(dict.fromkeys(n.split(":", 1)[0] for n in m["feature_names"])),
            "attrs_source": m["attrs_source"], "appropriateness": m["appropriateness"],
            "members": m.get("members", {}), "shards": len(m["shards"])}


def choose_samples(root: str, n: int = 8, seed: int = 0) -> list[dict]:
    """``n`` decoded samples (video and landmarks, no audio) chosen from the index with ``seed``, sorted by key;
    only the shards holding them are read.

    Raises:
        ValueError: the dataset has no samples. InputError: not a dataset.
    """
    import numpy as np

    from mien.data.reader import iter_samples, open_dataset, shard_urls

    info = open_dataset(root)
    keys = info.index["key"].tolist()
    if not keys:
        raise ValueError(f"{root}: the dataset has no samples")
    rng = np.random.default_rng(seed)
    want = set(rng.choice(keys, size=min(n, len(keys)), replace=False).tolist())
    shards = sorted(set(info.index.loc[info.index["key"].isin(want), "shard"]))
    urls = [u for u in shard_urls(root) if u.rsplit("/", 1)[-1] in shards]
    samples = [s for s in iter_samples(urls, audio=False) if s["__key__"] in want]
    samples.sort(key=lambda s: s["__key__"])
    return samples


__all__ = ["choose_samples", "dataset_summary"]
