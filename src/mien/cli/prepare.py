"""``mien prepare``: videos (local, globs, fsspec URLs) → a WebDataset clip dataset (see mien.pipelines.prepare).

Every dataset option is generated from :class:`~mien.pipelines.prepare.options.PrepareOptions`
(:mod:`mien.cli.options`); only how to run (workers, executor, Ray address, overwrite, progress) is set here.
"""

from __future__ import annotations

import argparse
import os
import sys

from mien.cli.options import add_options, options_from_args
from mien.pipelines.prepare.options import PrepareOptions


def add_parser(sub) -> None:
    p = sub.add_parser("prepare", help="cut videos into aligned face-clip shards for training",
                       description="Select clips (random, all, keywords, scored), crop and align one face per clip, "
                                   "extract landmarks, head pose, eye/mouth openness and audio features, and write "
                                   "WebDataset shards, manifest.json, index.parquet and report.json. A re-run with "
                                   "the same command resumes.")
    p.add_argument("inputs", nargs="*", help="video files, folders, globs or fsspec URLs (s3://, gs://, memory://); "
                                             "--mode dyadic: pairs CSVs (session,speaker_video,listener_video) or "
                                             "two-face videos")
    p.add_argument("-o", "--output", required=True, help="dataset root: folder or fsspec URL")
    add_options(p, PrepareOptions)
    p.add_argument("--workers", type=int, default=1, help="parallel processes (default 1)")
    p.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="local processes (default) or Ray tasks (needs `pip install ray`)")
    p.add_argument("--ray-address", "--address", dest="ray_address", default=None, help="Ray cluster address (default: a local Ray)")
    p.add_argument("--overwrite", action="store_true", help="discard an existing dataset instead of resuming")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mien.pipelines.prepare import prepare

    opts = options_from_args(PrepareOptions, args)
    if not args.inputs and not (opts.mode == "dyadic" and opts.react_root):
        raise ValueError("no inputs given (videos; with --mode dyadic: pairs CSVs, two-face videos or --react-root)")
    report = prepare(args.inputs, args.output, opts, workers=args.workers, overwrite=args.overwrite,
                     executor=args.executor, ray_address=args.ray_address,
                     progress=not args.no_progress and sys.stderr.isatty(),
                     log=lambda line: print(f"mien: skipped {line}", file=sys.stderr))
    rej = ", ".join(f"{k} {v}" for k, v in report.rejected.items()) or "none"
    speed = report.source_seconds / report.wall_seconds if report.wall_seconds else 0.0
    what = "dyad(s)" if opts.mode == "dyadic" else "video(s)"
    print(f"mien: prepared {len(report.ok)} {what} into {report.samples} sample(s) in {args.output} "
          f"({report.resumed} already done; {speed:.2f} s of video per s); rejected windows: {rej}")
    if report.no_au_labels:
        names = ", ".join(os.path.basename(s) for s in report.no_au_labels[:5])
        more = f" and {len(report.no_au_labels) - 5} more" if len(report.no_au_labels) > 5 else ""
        print(f"mien: {len(report.no_au_labels)} video(s) have no AU labels (clips without au.npy): {names}{more}")
    if report.failed:
        print(f"mien: {len(report.failed)} video(s) skipped, see {os.path.join(args.output, 'report.json')}")
        return 2 if not report.ok else 1
    return 0
