"""``mien tokens plot VIDEO --tokenizer DIR -o plot.png``: expression tokens of a video over time (cosine
similarity to a reference frame, 2-D PCA coloured by time); see :mod:`mien.pipelines.tokens`."""

from __future__ import annotations

import argparse


def add_tokenizer_video_args(p: argparse.ArgumentParser, output_metavar: str, output_help: str) -> None:
    """The arguments every tokenizer-on-a-video command shares (``mien tokens plot``, ``mien render …``):
    VIDEO, --tokenizer, -o, --subject, --start, --end, --every, --analysis, --device."""
    p.add_argument("video", help="input video file")
    p.add_argument("--tokenizer", required=True, metavar="DIR",
                   help="exported tokenizer folder (config.json + model.safetensors)")
    p.add_argument("-o", "--output", required=True, metavar=output_metavar, help=output_help)
    p.add_argument("--subject", type=int, default=None, metavar="ID",
                   help="subject-embedding index used to encode the input (default: a person the tokenizer does not "
                        "know, encoded with 0; ignored by subject-invariant tokenizers); a banked warp tokenizer's "
                        "swap also measures the input's motion from this subject's neutral face")
    p.add_argument("--start", type=float, default=None, metavar="SEC", help="first time to process (s)")
    p.add_argument("--end", type=float, default=None, metavar="SEC", help="last time to process (s)")
    p.add_argument("--every", type=int, default=1, metavar="N", help="process every N-th frame")
    p.add_argument("--analysis", default=None, metavar="FILE.parquet",
                   help="face boxes from an earlier `mien analyze` of this video (default: analyse it now)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")


def add_parser(sub) -> None:
    p = sub.add_parser("tokens", help="expression tokens of a video (plots)", description=__doc__)
    cmds = p.add_subparsers(dest="tokens_command", required=True, metavar="COMMAND")
    plot = cmds.add_parser("plot", help="cosine to a reference frame over time + 2-D PCA of the tokens")
    add_tokenizer_video_args(plot, "PLOT.png", "output PNG (written atomically)")
    plot.add_argument("--reference-frame", type=int, default=0, metavar="N",
                      help="decoded frame index of the reference (default 0; nearest frame with a face)")
    plot.add_argument("--tokens-out", default=None, metavar="FILE.npz",
                      help="also save frame, t_sec and tokens (N, D) to this .npz")
    plot.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mien.pipelines.tokens import plot_video_tokens

    r = plot_video_tokens(args.video, args.tokenizer, args.output, args.reference_frame, subject=args.subject,
                          start=args.start, end=args.end, every=args.every, device=args.device,
                          tokens_out=args.tokens_out, analysis=args.analysis)
    print(f"mien tokens plot: {r['tokens']} tokens (D = {r['dim']}) of {r['frames_processed']} frames, "
          f"reference frame {r['reference_frame']} -> {r['output']}")
    return 0
