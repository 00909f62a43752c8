"""``mien reenact SOURCE [DRIVING] -o OUT.mp4``: animate a portrait with a driving video (one-shot face
reenactment), or edit a still portrait's expression along a model's AU directions (see
:mod:`mien.pipelines.reenact_video`)."""

from __future__ import annotations

import argparse
import sys

from mien.cli.options import add_options, options_from_args
from mien.pipelines.reenact_video import ReenactOptions

DESCRIPTION = """Animate the face of SOURCE (an image, or a video's first frame / --source-frame) with the head and
face motion of DRIVING (a video or webcam:N). Motion is relative by default: the driver's change since its first
face frame is applied to the source's own pose and expression (--reference best: since the driving frame most
like the source in expression, for drivers that start mid-expression, video files only; --absolute copies the
driver's). The output face is pasted back into the full source frame with a feathered mask (--no-paste-back: the
face crop); the driving video's audio is kept. Driving frames without a face keep the last good motion and are counted.

--model: a folder from `mien export reenact`, or the baselines `warp` (classical piecewise-affine warp of the
source along MediaPipe's face mesh, OpenCV; the default, because no trained weights ship with mien yet) and
`copy` (the unchanged source). --edit AU12=+0.8,AU04=-0.5 adds AU changes: along a trained model's learned AU
directions of its expression latent, or, with `warp`, as mesh displacements of py-feat's linear AU -> mesh model;
with no DRIVING it edits the still portrait (OUT.png, or OUT.mp4 ramping the edit in)."""


def add_parser(sub) -> None:
    p = sub.add_parser("reenact", help="animate a portrait with a driving video (face reenactment)",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", help="source portrait: image or video file")
    p.add_argument("driving", nargs="?", default=None, help="driving video file or webcam:N (omit with --edit)")
    p.add_argument("-o", "--output", required=True, metavar="OUT.mp4",
                   help="output video (or .png/.jpg for a still-portrait edit), written atomically")
    add_options(p, ReenactOptions)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mien.pipelines.reenact_video import reenact_video

    options = options_from_args(ReenactOptions, args, progress=not args.no_progress and sys.stderr.isatty())
    rep = reenact_video(args.source, args.driving, args.output, options)
    audio = "with the driving audio" if rep.audio else "no audio"
    motion = "relative" if rep.relative else "absolute"
    print(f"mien reenact ({rep.model}, {motion} motion): {rep.frames} frames, {rep.width}x{rep.height} at "
          f"{rep.fps:.2f} fps, {audio}, {rep.seconds:.1f} s -> {rep.output}")
    if rep.face_gaps:
        print(f"mien reenact: {rep.face_gaps} of {rep.frames} driving frames had no face and kept the last good "
              "motion (the source before the first face)", file=sys.stderr)
    return 0
