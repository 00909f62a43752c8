"""``mien dataset info|show|verify``: summarise a prepared dataset, draw a contact sheet of sample clips, check
its shards against the manifest (and repair damaged ones by re-preparing their videos)."""

from __future__ import annotations

import argparse
import json
import sys


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
    v = dsub.add_parser("verify", help="check shard sizes, sample counts and SHA-256 hashes against the manifest",
                        description="Exit 0 when every shard matches the manifest, 1 with the bad shards listed.")
    v.add_argument("root", help="dataset root (folder or fsspec URL)")
    v.add_argument("--repair", action="store_true",
                   help="re-prepare the videos of bad shards from their sources, with the dataset's settings")
    v.add_argument("--workers", type=int, default=1, help="--repair: parallel processes (default 1)")
    v.add_argument("--no-hash", action="store_true", help="skip the SHA-256 comparison (sizes and counts only)")
    v.set_defaults(func=run_verify)


def summary(root: str) -> dict:
    """Summary of a dataset: counts, subjects, duration, schema and per-shard sizes."""
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


def run_info(args: argparse.Namespace) -> int:
    s = summary(args.root)
    if args.json:
        print(json.dumps(s, indent=2))
        return 0
    if s.get("kind") == "dyadic":
        print(f"{s['root']}: mien dyadic dataset schema {s['schema_version']}")
        print(f"  dyads {s['dyads']} ({s['items']} items, both roles), {s['frames']} frames at {s['fps']} fps, "
              f"{s['shards']} shards")
        print(f"  speaker features {s['feature_columns']}: {', '.join(s['feature_groups'])}; attributes from "
              f"{', '.join(s['attrs_source'])}; appropriateness: {s['appropriateness']['source']}")
        print("  members: " + ", ".join(s["members"]))
        return 0
    print(f"{s['root']}: mien dataset schema {s['schema_version']}")
    print(f"  samples {s['samples']} ({s['with_audio']} with audio), videos {s['videos']}, subjects {s['subjects']}, "
          f"duration {s['duration_sec']:.1f} s")
    st = s["settings"]
    print(f"  clips {st['clip_seconds']} s at {st['fps']} fps, crop {st['crop_size']} px, mode {st['mode']}")
    print("  members: " + ", ".join(s["members"]))
    if s["au_names"]:
        print(f"  AU labels ({s['au_samples']} samples): " + ", ".join(s["au_names"]))
    total = sum(x["bytes"] for x in s["shards"])
    print(f"  shards {len(s['shards'])}, {total / 1e6:.1f} MB:")
    bad = 0
    for x in s["shards"]:
        note = ""
        if x["bytes_on_disk"] != x["bytes"]:
            bad += 1
            note = ("  MISSING" if x["bytes_on_disk"] is None
                    else f"  DIFFERS: {x['bytes_on_disk'] / 1e6:.2f} MB on disk")
        print(f"    {x['name']}  {x['samples']} samples  {x['bytes'] / 1e6:.2f} MB{note}")
    if bad:
        print(f"  {bad} shard(s) differ from the manifest: run `mien dataset verify {s['root']}`")
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


def _print_bad(root: str, bad) -> None:
    print(f"mien: {len(bad)} bad shard(s) in {root}:")
    for c in bad:
        print(f"  {c.name} (video {c.video}): {'; '.join(c.problems)}")


def run_verify(args: argparse.Namespace) -> int:
    from mien.data.verify import verify_dataset

    checks = verify_dataset(args.root, hashes=not args.no_hash)
    bad = [c for c in checks if not c.ok]
    if not bad:
        print(f"mien: {args.root}: all {len(checks)} shard(s) match the manifest")
        return 0
    _print_bad(args.root, bad)
    if not args.repair:
        print("mien: `mien dataset verify --repair` re-prepares their videos")
        return 1
    from mien.data.reader import open_dataset

    if open_dataset(args.root).manifest.get("kind") == "dyadic":
        raise ValueError(f"{args.root}: --repair does not handle dyadic datasets; delete the bad dyads' done/*.json "
                         "markers and re-run the same `mien prepare --mode dyadic` command")
    from mien.pipelines.prepare.run import repair

    videos = sorted({c.video for c in bad})
    print(f"mien: re-preparing {len(videos)} video(s): {', '.join(videos)}")
    repair(args.root, [c.name for c in bad], workers=args.workers,
           log=lambda line: print(f"mien: skipped {line}", file=sys.stderr))
    checks = verify_dataset(args.root, hashes=not args.no_hash)
    bad = [c for c in checks if not c.ok]
    if bad:
        _print_bad(args.root, bad)
        return 1
    print(f"mien: repaired; all {len(checks)} shard(s) match the manifest")
    return 0
