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


def run_info(args: argparse.Namespace) -> int:
    from mien.data.summary import dataset_summary

    s = dataset_summary(args.root)
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
    from mien.data.summary import choose_samples
    from mien.viz.contact_sheet import save_contact_sheet

    samples = choose_samples(args.root, args.n, args.seed)
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
