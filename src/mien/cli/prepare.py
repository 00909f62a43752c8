"""``mien prepare``: videos (local, globs, fsspec URLs) → a WebDataset clip dataset (see mien.pipelines.prepare)."""

from __future__ import annotations

import argparse
import os
import sys


def add_parser(sub) -> None:
    p = sub.add_parser("prepare", help="cut videos into aligned face-clip shards for training",
                       description="Select clips (random, all, keywords, scored), crop and align one face per clip, "
                                   "extract landmarks, head pose, eye/mouth openness and audio features, and write "
                                   "WebDataset shards, manifest.json, index.parquet and report.json. A re-run with "
                                   "the same command resumes.")
    p.add_argument("inputs", nargs="+", help="video files, folders, globs or fsspec URLs (s3://, gs://, memory://)")
    p.add_argument("-o", "--output", required=True, help="dataset root: folder or fsspec URL")
    p.add_argument("--clip-seconds", type=float, default=2.0, help="clip length in seconds (default 2)")
    p.add_argument("--fps", type=float, default=25.0, help="clip frame rate (default 25)")
    p.add_argument("--crop-size", type=int, default=256, help="square crop side in pixels (default 256)")
    p.add_argument("--margin", type=float, default=0.0, help="extra crop border, fraction of half size (default 0)")
    p.add_argument("--smooth-frames", type=float, default=2.0, help="temporal smoothing σ of the crop (frames)")
    p.add_argument("--mode", choices=["random", "all", "keywords", "scored"], default="random")
    p.add_argument("--clips-per-video", type=int, default=4, help="random mode: clips per video (default 4)")
    p.add_argument("--stride", dest="stride_seconds", type=float, default=None, metavar="SEC",
                   help="all/scored modes: seconds between window starts")
    p.add_argument("--top-k", type=int, default=4, help="scored mode: clips kept per video")
    p.add_argument("--tokenizer", metavar="PATH", help="scored mode: measure expression variation with this exported "
                                                       "expression tokenizer's tokens instead of landmarks")
    p.add_argument("--w-expression", type=float, default=1.0, help="scored mode: expression variation weight")
    p.add_argument("--w-stability", type=float, default=1.0, help="scored mode: head stability weight")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--transcripts", default=None, help="keywords mode: folder/URL with <stem>.json|.vtt|.srt")
    p.add_argument("--keywords", default="", help="keywords mode: comma-separated words or phrases")
    p.add_argument("--offset-seconds", type=float, default=1.0, help="keywords mode: window start after keyword")
    p.add_argument("--track-policy", choices=["single", "largest"], default="single")
    p.add_argument("--min-face", type=float, default=64.0, help="smallest face size in source px (default 64)")
    p.add_argument("--min-confidence", type=float, default=0.5, help="smallest detector score (default 0.5)")
    p.add_argument("--subjects", default=None, help="CSV video,subject (default: one subject per video)")
    p.add_argument("--au-labels", default=None, metavar="PATH",
                   help="per-frame FACS AU labels (DISFA style): a CSV with columns video, frame|time_sec, AU1, AU2, "
                        "… or a folder of <video stem>.csv; clips of labelled videos get au.npy (T, A)")
    p.add_argument("--audio", action=argparse.BooleanOptionalAction, default=True, help="audio + features")
    p.add_argument("--egemaps", action="store_true", help="eGeMAPS functionals (needs opensmile)")
    p.add_argument("--crf", type=int, default=18, help="x264 quality of crop videos (default 18)")
    p.add_argument("--shard-samples", type=int, default=256, help="most samples per shard (default 256)")
    p.add_argument("--workers", type=int, default=1, help="parallel processes (default 1)")
    p.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="local processes (default) or Ray tasks (needs `pip install ray`)")
    p.add_argument("--ray-address", default=None, help="Ray cluster address (default: a local Ray)")
    p.add_argument("--overwrite", action="store_true", help="discard an existing dataset instead of resuming")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mien.pipelines.prepare import PrepareOptions, prepare

    opts = PrepareOptions(
        clip_seconds=args.clip_seconds, fps=args.fps, crop_size=args.crop_size, margin=args.margin,
        smooth_frames=args.smooth_frames, mode=args.mode, clips_per_video=args.clips_per_video,
        stride_seconds=args.stride_seconds, top_k=args.top_k, w_expression=args.w_expression, tokenizer=args.tokenizer,
        w_stability=args.w_stability, seed=args.seed, transcripts=args.transcripts,
        keywords=tuple(k.strip() for k in args.keywords.split(",") if k.strip()),
        offset_seconds=args.offset_seconds, track_policy=args.track_policy, min_face=args.min_face,
        min_confidence=args.min_confidence, subjects=args.subjects, audio=args.audio, egemaps=args.egemaps,
        crf=args.crf, shard_samples=args.shard_samples, au_labels=args.au_labels)
    report = prepare(args.inputs, args.output, opts, workers=args.workers, overwrite=args.overwrite,
                     executor=args.executor, ray_address=args.ray_address,
                     progress=not args.no_progress and sys.stderr.isatty(),
                     log=lambda line: print(f"mien: skipped {line}", file=sys.stderr))
    rej = ", ".join(f"{k} {v}" for k, v in report.rejected.items()) or "none"
    speed = report.source_seconds / report.wall_seconds if report.wall_seconds else 0.0
    print(f"mien: prepared {len(report.ok)} video(s) into {report.samples} sample(s) in {args.output} "
          f"({report.resumed} already done; {speed:.2f} s of video per s); rejected windows: {rej}")
    if report.no_au_labels:
        names = ", ".join(os.path.basename(s) for s in report.no_au_labels[:5])
        more = f" and {len(report.no_au_labels) - 5} more" if len(report.no_au_labels) > 5 else ""
        print(f"mien: {len(report.no_au_labels)} video(s) have no AU labels (clips without au.npy): {names}{more}")
    if report.failed:
        print(f"mien: {len(report.failed)} video(s) skipped, see {os.path.join(args.output, 'report.json')}")
        return 2 if not report.ok else 1
    return 0
