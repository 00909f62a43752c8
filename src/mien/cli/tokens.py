"""``mien tokens plot VIDEO --tokenizer DIR -o plot.png``: expression tokens of a video over time (cosine
similarity to a reference frame, 2-D PCA coloured by time); see :mod:`mien.pipelines.tokens`."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser("tokens", help="expression tokens of a video (plots)", description=__doc__)
    cmds = p.add_subparsers(dest="tokens_command", required=True, metavar="COMMAND")
    plot = cmds.add_parser("plot", help="cosine to a reference frame over time + 2-D PCA of the tokens")
    plot.add_argument("video", help="input video file")
    plot.add_argument("--tokenizer", required=True, metavar="DIR",
                      help="exported tokenizer folder (config.json + model.safetensors)")
    plot.add_argument("-o", "--output", required=True, metavar="PLOT.png", help="output PNG (written atomically)")
    plot.add_argument("--reference-frame", type=int, default=0, metavar="N",
                      help="decoded frame index of the reference (default 0; nearest frame with a face)")
    plot.add_argument("--subject", type=int, default=0, metavar="ID",
                      help="subject-embedding index used to encode (default 0)")
    plot.add_argument("--tokens-out", default=None, metavar="FILE.npz",
                      help="also save frame, t_sec and tokens (N, D) to this .npz")
    plot.add_argument("--start", type=float, default=None, metavar="SEC", help="first time to process (s)")
    plot.add_argument("--end", type=float, default=None, metavar="SEC", help="last time to process (s)")
    plot.add_argument("--every", type=int, default=1, metavar="N", help="process every N-th frame")
    plot.add_argument("--analysis", default=None, metavar="FILE.parquet",
                      help="face boxes from an earlier `mien analyze` of this video (default: analyse it now)")
    plot.add_argument("--device", default="cpu", help="torch device (default cpu)")
    plot.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mien.pipelines.tokens import plot_video_tokens

    r = plot_video_tokens(args.video, args.tokenizer, args.output, args.reference_frame, subject=args.subject,
                          start=args.start, end=args.end, every=args.every, device=args.device,
                          tokens_out=args.tokens_out, analysis=args.analysis)
    print(f"mien tokens plot: {r['tokens']} tokens (D = {r['dim']}) of {r['frames_processed']} frames, "
          f"reference frame {r['reference_frame']} -> {r['output']}")
    return 0
