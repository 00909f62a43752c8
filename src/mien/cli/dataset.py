"""``mien dataset info|show``: summarise a prepared dataset, draw a contact sheet of sample clips."""

from __future__ import annotations

import argparse
import json


def add_parser(sub) -> None:
    p = sub.add_parser("dataset", help="inspect a dataset made by `mien prepare`")
    dsub = p.add_subparsers(dest="dataset_command", required=True, metavar="ACTION")
    i = dsub.add_parser("info", help="counts, subjects, duration, schema, per-shard sizes")
    i.add_argument("root", help="dataset root (folder or fsspec URL)")
    i.add_argument("--json", action="store_true", help="print the summary as JSON")
    i.set_defaults(func=run_info)
    s = dsub.add_parser("show", help="contact sheet PNG of sample clips with landmarks")
    s.add_argument("root", help="dataset root (folder or fsspec URL)")
    s.add_argument("--n", type=int, default=8, help="number of samples (default 8)")
    s.add_argument("--frames", type=int, default=4, help="frames per sample (default 4)")
    s.add_argument("--seed", type=int, default=0, help="which samples: seeded choice from the index")
    s.add_argument("-o", "--output", default="contact_sheet.png", help="PNG path (default contact_sheet.png)")
    s.set_defaults(func=run_show)


def summary(root: str) -> dict:
    """Summary of a dataset: counts, subjects, duration, schema and per-shard sizes."""
    from mien.data.reader import open_dataset

    info = open_dataset(root)
    m, df = info.manifest, info.index
    dur = float((df["end_sec"] - df["start_sec"]).sum()) if len(df) else 0.0
    return {
        "root": root, "schema_version": m["schema_version"], "mien_version": m.get("mien_version"),
        "samples": int(len(df)), "videos": int(df["video_key"].nunique()) if len(df) else 0,
        "subjects": int(df["subject_id"].nunique()) if len(df) else 0,
        "with_audio": int(df["has_audio"].sum()) if len(df) else 0, "duration_sec": round(dur, 3),
        "settings": {k: m["settings"][k] for k in ("clip_seconds", "fps", "crop_size", "mode")},
        "members": m.get("members", {}),
        "shards": [{"name": s["name"], "samples": s["samples"], "bytes": s["bytes"]} for s in m["shards"]],
    }


def run_info(args: argparse.Namespace) -> int:
    s = summary(args.root)
    if args.json:
        print(json.dumps(s, indent=2))
        return 0
    print(f"{s['root']}: mien dataset schema {s['schema_version']}")
    print(f"  samples {s['samples']} ({s['with_audio']} with audio), videos {s['videos']}, subjects {s['subjects']}, "
          f"duration {s['duration_sec']:.1f} s")
    st = s["settings"]
    print(f"  clips {st['clip_seconds']} s at {st['fps']} fps, crop {st['crop_size']} px, mode {st['mode']}")
    print("  members: " + ", ".join(s["members"]))
    total = sum(x["bytes"] for x in s["shards"])
    print(f"  shards {len(s['shards'])}, {total / 1e6:.1f} MB:")
    for x in s["shards"]:
        print(f"    {x['name']}  {x['samples']} samples  {x['bytes'] / 1e6:.2f} MB")
    return 0


def run_show(args: argparse.Namespace) -> int:
    import numpy as np

    from mien.data.reader import iter_samples, open_dataset, shard_urls
    from mien.viz.contact_sheet import save_contact_sheet

    info = open_dataset(args.root)
    keys = info.index["key"].tolist()
    if not keys:
        raise ValueError(f"{args.root}: the dataset has no samples")
    rng = np.random.default_rng(args.seed)
    want = set(rng.choice(keys, size=min(args.n, len(keys)), replace=False).tolist())
    shards = sorted(set(info.index.loc[info.index["key"].isin(want), "shard"]))
    urls = [u for u in shard_urls(args.root) if u.rsplit("/", 1)[-1] in shards]
    samples = [s for s in iter_samples(urls, audio=False) if s["__key__"] in want]
    samples.sort(key=lambda s: s["__key__"])
    path = save_contact_sheet(samples, args.output, frames_per_sample=args.frames)
    print(f"mien: contact sheet of {len(samples)} sample(s) written to {path}")
    return 0
