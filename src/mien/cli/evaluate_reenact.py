"""``mien evaluate reenact VIDEOS… --model PATH|warp|copy -o OUT``: held-out self- and cross-reenactment metrics of
a face reenactor and of the copy-the-source and classical-warp baselines on the same pairs (protocol:
:mod:`mien.pipelines.reenact_eval`)."""

from __future__ import annotations

import argparse
import sys

from mien.cli.options import add_options, options_from_args
from mien.pipelines.reenact_eval import ReenactEvalOptions

DESCRIPTION = """Held-out evaluation of one-shot face reenactment. VIDEOS are the held-out set, one subject per video
and none in the training shards. Per video: source = its first face frame; driving frames = --frames frames over
its held-out time segment (from --segment x duration). Self-reenactment (source driven by its own segment; L1,
PSNR, SSIM, LPIPS, AKD vs the real frames) and cross-reenactment (video i's source driven by video i+1's
segment, or by every other video with --cross-pairs all; CSIM vs source, AKD, AED-AU, AED-expr, emotion
agreement, APD vs driver), for --model and the baselines copy (the unchanged source) and warp (piecewise-affine
mesh warp), all on the same pairs. Writes OUT/report.md, metrics.csv, pairs.csv, report.json."""


def add_parser(kinds) -> None:
    p = kinds.add_parser("reenact", help="face reenactment: self/cross-reenactment metrics + copy/warp baselines",
                         description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("videos", nargs="+", help="held-out videos (files, folders or globs), one subject each")
    p.add_argument("-o", "--output", default="reenact_eval", metavar="DIR", help="report folder")
    add_options(p, ReenactEvalOptions)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mien.io.video import expand_inputs
    from mien.pipelines.reenact_eval import evaluate_reenact, markdown_table, write_report

    options = options_from_args(ReenactEvalOptions, args)
    videos = expand_inputs(args.videos)
    rep = evaluate_reenact(videos, options, log=lambda line: print(f"mien evaluate reenact: {line}",
                                                                   file=sys.stderr))
    files = write_report(rep, args.output)
    print(markdown_table(rep), end="")
    print(f"({rep['seconds']:.0f} s) -> {files['report.md']}")
    return 0
