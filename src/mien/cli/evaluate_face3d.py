"""``mien evaluate face3d INPUT… -o DIR``: held-out evaluation of 3-D face reconstruction — landmark error of the
fitted mesh against dlib's independent 68-point detector (NME by inter-ocular distance), jitter on still
segments with and without One Euro smoothing (+ a figure), and, with ``--encoder DIR`` (a face3d-learn
export), the learned encoder's landmark error and the expression consistency of its neural renders. See
:mod:`mien.pipelines.face3d_eval`.

Held-out inputs for the shipped mien-face model: ``videos/talking/face_5.mp4``, ``videos/talking/
Input__00098.mp4``, ``videos/expressive/driving_d9.mp4`` and still images (see
``mien/assets/face3d/PROVENANCE.md``); inputs used to build the model are flagged in the report.
"""

from __future__ import annotations

import argparse


def add_parser(kinds) -> None:
    p = kinds.add_parser("face3d", help="3-D face reconstruction: landmark error vs dlib, jitter, expression "
                         "consistency", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="held-out videos or images (one face each)")
    p.add_argument("-o", "--output", required=True, metavar="DIR",
                   help="folder for report.md, face3d_eval.json, landmarks.csv, jitter.csv, jitter.png")
    p.add_argument("--model", default=None, metavar="SPEC",
                   help="face model: a .npz from `mien train face-model`, or flame:/path/generic_model.pkl"
                        "[,embedding.npz] (default: the shipped mien-face)")
    p.add_argument("--encoder", default=None, metavar="DIR",
                   help="a face3d-learn export (encoder + neural renderer): also evaluate the learned encoder "
                        "and the expression consistency of its renders")
    p.add_argument("--transfer", nargs=2, default=None, metavar=("SOURCE", "TARGET"),
                   help="with --encoder: expression consistency between SOURCE and the neural expression transfer "
                        "of SOURCE onto TARGET (baseline: the target unchanged)")
    p.add_argument("--every", type=int, default=1, metavar="N", help="analyse every N-th frame (jitter: keep 1)")
    p.add_argument("--start", type=float, default=None, metavar="SEC", help="first time to analyse (s)")
    p.add_argument("--end", type=float, default=None, metavar="SEC", help="last time to analyse (s)")
    p.add_argument("--landmark-every", type=int, default=5, metavar="N",
                   help="run dlib on every N-th analysed video frame (default 5)")
    p.add_argument("--dlib-model", default=None, metavar="FILE.dat",
                   help="dlib 68-point shape predictor (default: the one in face-recognition-models)")
    p.add_argument("--no-landmarks", action="store_true",
                   help="skip the landmark error (no dlib needed): jitter only")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mien.pipelines.face3d_eval import evaluate_face3d, report_markdown

    rep = evaluate_face3d(args.inputs, args.output, model=args.model, every=args.every, start=args.start,
                          end=args.end, landmark_every=args.landmark_every, dlib_model=args.dlib_model,
                          landmarks=not args.no_landmarks, encoder=args.encoder,
                          transfer=args.transfer)
    print(report_markdown(rep), end="")
    print(f"mien evaluate face3d: wrote {', '.join(rep.files)}")
    return 0
