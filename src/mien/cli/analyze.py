"""``mien analyze``: videos, images, folders, globs or a webcam → per-frame tables, overlays, plots."""

from __future__ import annotations

import argparse
import os
import sys
import time


def add_parser(sub) -> None:
    p = sub.add_parser("analyze", help="analyse faces in videos, images or a webcam",
                       description="Per frame and face: box, track id, 478 landmarks, head pose, gaze, eye and "
                                   "mouth openness, blinks. Writes <stem>.parquet (and CSV/OpenFace CSV), "
                                   "<stem>.overlay.mp4, <stem>.plot.png and report.json into the output folder.")
    p.add_argument("inputs", nargs="*", help="video/image files, folders, glob patterns, or webcam:N")
    p.add_argument("--source", help="alternative input, e.g. webcam:0 (live until q or Ctrl-C)")
    p.add_argument("-o", "--output", default="mien_out", help="output folder (default: mien_out)")
    p.add_argument("--every", type=int, default=1, metavar="N", help="process every N-th frame")
    p.add_argument("--start", type=float, default=None, metavar="SEC", help="start time in seconds")
    p.add_argument("--end", type=float, default=None, metavar="SEC", help="end time in seconds")
    p.add_argument("--max-faces", type=int, default=1, metavar="N", help="most faces per frame (default 1)")
    p.add_argument("--detector", choices=["auto", "short", "full"], default="auto",
                   help="MediaPipe face detector: auto (default: short-range for video, full-range for images), "
                        "short or full (small/distant faces)")
    p.add_argument("--focal-px", type=float, default=None, help="camera focal length in pixels (default: width)")
    p.add_argument("--max-side", type=int, default=800, metavar="PX",
                   help="downscale larger frames for MediaPipe (default 800); results stay in source pixels")
    p.add_argument("--emotion", action=argparse.BooleanOptionalAction, default=False,
                   help="add emotion probabilities and 256-d expression embeddings (face-api; slower)")
    p.add_argument("--au", action=argparse.BooleanOptionalAction, default=False,
                   help="add Action Unit probabilities (AU01, AU02, …; mien's CK+-trained model; slower)")
    p.add_argument("--au-baseline", action="store_true",
                   help="person-specific AU normalisation: each track's median features taken as its neutral")
    p.add_argument("--au-model", metavar="PATH",
                   help="AU model from `mien train au` (.ckpt) or `mien export au` (.onnx) instead of the default")
    p.add_argument("--tokenizer", metavar="PATH",
                   help="exported expression tokenizer folder: add per-face expression tokens")
    p.add_argument("--reid", action=argparse.BooleanOptionalAction, default=None,
                   help="re-identify faces that leave and return (default: on when PyTorch is installed)")
    p.add_argument("--device", default="cpu", help="device for PyTorch models (MediaPipe runs on CPU)")
    p.add_argument("--overlay", action=argparse.BooleanOptionalAction, default=True,
                   help="write <stem>.overlay.mp4 (default: on)")
    p.add_argument("--plot", action=argparse.BooleanOptionalAction, default=True,
                   help="write <stem>.plot.png (default: on)")
    p.add_argument("--format", dest="formats", default="parquet",
                   help="comma-separated: parquet, csv, openface (default: parquet)")
    p.add_argument("--overwrite", action="store_true", help="redo inputs whose outputs already exist")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mien.io.video import WEBCAM_PREFIX, expand_inputs
    from mien.pipelines.analyze import AnalyzeOptions, analyze_files

    specs = list(args.inputs) + ([args.source] if args.source else [])
    if not specs:
        raise ValueError("no input given (a file, folder, glob or --source webcam:N)")
    formats = tuple(f.strip() for f in args.formats.split(",") if f.strip())
    options = AnalyzeOptions(every=args.every, start=args.start, end=args.end, max_faces=args.max_faces,
                             detector=args.detector, focal_px=args.focal_px, max_side=args.max_side,
                             emotion=args.emotion, au=args.au, au_baseline=args.au_baseline, au_model=args.au_model,
                             tokenizer=args.tokenizer,
                             identity=args.reid, device=args.device,
                             progress=not args.no_progress and sys.stderr.isatty())
    webcams = [s for s in specs if s.startswith(WEBCAM_PREFIX)]
    if webcams:
        if len(specs) > 1:
            raise ValueError("a webcam source cannot be mixed with other inputs")
        return run_webcam(webcams[0], args.output, options, formats)
    inputs = expand_inputs(specs)
    if not inputs:
        raise ValueError(f"no image or video files found in {', '.join(specs)}")
    t0 = time.perf_counter()
    report = analyze_files(inputs, args.output, options, formats=formats, overlay=args.overlay, plot=args.plot,
                           overwrite=args.overwrite, log=None if len(inputs) == 1 else lambda line: print(f"mien: skipped {line}", file=sys.stderr))
    dt = time.perf_counter() - t0
    if len(inputs) == 1 and report.failed:
        from mien.errors import InputError

        raise InputError(report.failed[0]["input"], report.failed[0]["reason"])
    faces = sum(r["faces"] for r in report.ok)
    fps = report.frames / report.seconds if report.seconds else 0.0
    line = (f"mien: analyzed {len(report.ok)} input(s): {report.frames} frames, {faces} face track(s), "
            f"{fps:.1f} frames/s, {dt:.1f} s; outputs in {args.output}")
    if report.skipped:
        line += f"; {len(report.skipped)} already done"
    if report.failed:
        line += f"; {len(report.failed)} failed (see {os.path.join(args.output, 'report.json')})"
    print(line)
    if report.failed:
        return 2 if not report.ok and not report.skipped else 1
    return 0


def run_webcam(spec: str, out_dir: str, options, formats: tuple[str, ...]) -> int:
    """Live analysis with a preview window (when a display exists) until q, Ctrl-C or the camera ends."""
    from pathlib import Path

    from mien.io.video import open_source
    from mien.pipelines.analyze import analyze_source, output_paths, write_outputs

    src = open_source(spec)
    show = bool(os.environ.get("DISPLAY") or sys.platform in ("win32", "darwin"))
    print(f"mien: reading {spec} ({src.info.width}x{src.info.height}); press q in the window or Ctrl-C to stop")

    def on_frame(frame, analyzer) -> bool:
        if not show:
            return False
        import cv2

        from mien.viz.live import live_preview

        img = live_preview(frame.image, frame.index, analyzer)
        cv2.imshow("mien", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        return (cv2.waitKey(1) & 0xFF) == ord("q")

    try:
        res = analyze_source(src, options, on_frame=on_frame)
    except KeyboardInterrupt:
        src.stop()
        raise
    finally:
        if show:
            import cv2

            cv2.destroyAllWindows()
    outs = output_paths([spec], out_dir, formats, overlay=False, plot=True)[0]
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    write_outputs(res, spec, outs)
    print(f"mien: {res.summary()}; outputs: {', '.join(outs.values())}")
    return 0

