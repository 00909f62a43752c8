"""``mien react SPEAKER_VIDEO -o DIR --model MODEL_DIR``: generate listener facial reactions to a speaker video."""

from __future__ import annotations

import argparse
import sys
import warnings

from mien.cli.options import add_options, options_from_args
from mien.pipelines.react import ReactOptions


def add_parser(sub) -> None:
    p = sub.add_parser("react", help="generate listener facial reactions to a speaker video",
                       description="Analyse the speaker (AUs, emotion, audio), generate N listener reactions in the "
                                   "REACT layout (15 AUs, valence/arousal, 8 expression probabilities per frame) with a "
                                   "trained reaction model, and write <stem>.reactions.parquet (one row per reaction x "
                                   "frame), <stem>.reactions.png, <stem>.reaction<i>.mp4 (the AU-driven face mesh "
                                   "beside the speaker) and, with --listener-image, <stem>.reaction<i>.portrait.mp4 (the "
                                   "listener portrait animated through its AU editing directions, with the speaker's "
                                   "audio).")
    p.add_argument("speaker", help="speaker video file")
    p.add_argument("-o", "--output", default="reactions", help="output folder (default: reactions)")
    p.add_argument("--model", required=True, metavar="DIR",
                   help="reaction model folder (config.json + model.safetensors, from `mien export reaction`)")
    add_options(p, ReactOptions)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mien.pipelines.react import react_to_files

    opts = options_from_args(ReactOptions, args)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        files = react_to_files(args.speaker, args.output, args.model, opts)
    for w in caught:  # e.g. AUs a listener portrait could not show: one line each
        if issubclass(w.category, UserWarning):
            print(f"mien react: {w.message}", file=sys.stderr)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    print(f"mien: {opts.n} reaction(s) ({'online' if opts.online else 'offline'}) -> "
          + ", ".join(str(p) for p in files.values()))
    return 0
