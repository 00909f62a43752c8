"""``mien render reconstruction|swap VIDEO --tokenizer DIR -o OUT.mp4``: side-by-side videos rendered by an
exported expression tokenizer (see :mod:`mien.pipelines.render`)."""

from __future__ import annotations

import argparse

from mien.cli.tokens import add_tokenizer_video_args


def _common(p: argparse.ArgumentParser) -> None:
    add_tokenizer_video_args(p, "OUT.mp4", "output video (written atomically)")
    p.add_argument("--size", type=int, default=None, metavar="PX",
                   help="side of each panel in px (default: the tokenizer's crop size)")
    p.add_argument("--batch-size", type=int, default=16, metavar="N", help="frames per forward pass")


def add_parser(sub) -> None:
    p = sub.add_parser("render", help="render reconstruction / identity-swap videos with an expression tokenizer",
                       description=__doc__)
    kinds = p.add_subparsers(dest="render_kind", required=True, metavar="KIND")
    rec = kinds.add_parser("reconstruction", help="side by side: input face crop | its reconstruction")
    _common(rec)
    rec.set_defaults(func=run)
    swap = kinds.add_parser("swap", help="side by side: input face crop | its expressions on another subject")
    _common(swap)
    swap.add_argument("--target-subject", type=int, required=True, metavar="ID",
                      help="subject-embedding index of the identity to render")
    swap.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mien.pipelines.render import render_video

    rep = render_video(args.video, args.tokenizer, args.output, args.render_kind, subject=args.subject,
                       target_subject=getattr(args, "target_subject", None), start=args.start, end=args.end,
                       every=args.every, size=args.size, device=args.device, batch_size=args.batch_size,
                       analysis=args.analysis)
    print(f"mien render {rep.kind}: {rep.frames} frames ({rep.faces} with a face), {rep.width}x{rep.height} "
          f"at {rep.fps:.2f} fps, {rep.seconds:.1f} s -> {rep.output}")
    return 0
