"""``mien analyze``: videos, images, folders, globs or a webcam → per-frame tables, overlays, plots."""

from __future__ import annotations

import argparse
import os
import sys
import time

from mien.cli.options import add_options, options_from_args
from mien.pipelines.analyze import AnalyzeOptions


def add_parser(sub) -> None:
    p = sub.add_parser("analyze", help="analyse faces in videos, images or a webcam",
                       description="Per frame and face: box, track id, 478 landmarks, head pose, gaze, eye and "
                                   "mouth openness, blinks. The output folder is one results dataset: "
                                   "video=<stem>/part-0.parquet per input (Hive-partitioned Parquet) and "
                                   "_manifest.json, plus <stem>.csv/.openface.csv, <stem>.overlay.mp4, "
                                   "<stem>.plot.png and report.json. A re-run with the same command resumes.")
    p.add_argument("inputs", nargs="*", help="video/image files, folders, glob patterns, fsspec URLs "
                                             "(s3://, memory://), or webcam:N")
    p.add_argument("--source", help="alternative input, e.g. webcam:0 (live until q or Ctrl-C)")
    p.add_argument("-o", "--output", default="mien_out",
                   help="output folder or fsspec URL (default: mien_out)")
    add_options(p, AnalyzeOptions)
    p.add_argument("--overlay", action=argparse.BooleanOptionalAction, default=True,
                   help="write <stem>.overlay.mp4 (default: on)")
    p.add_argument("--plot", action=argparse.BooleanOptionalAction, default=True,
                   help="write <stem>.plot.png (default: on)")
    p.add_argument("--format", dest="formats", default="parquet",
                   help="comma-separated: parquet, csv, openface (default: parquet)")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="inputs analysed in parallel (default 1: in this process)")
    p.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="local processes (default) or Ray tasks (needs `pip install ray`)")
    p.add_argument("--ray-address", "--address", dest="ray_address", default=None, metavar="ADDR",
                   help="join the Ray cluster at ADDR (default: a local Ray with --workers CPUs)")
    p.add_argument("--overwrite", action="store_true", help="redo inputs whose outputs already exist")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mien.io.video import WEBCAM_PREFIX, expand_inputs
    from mien.pipelines.batch import analyze_files

    specs = list(args.inputs) + ([args.source] if args.source else [])
    if not specs:
        raise ValueError("no input given (a file, folder, glob or --source webcam:N)")
    formats = tuple(f.strip() for f in args.formats.split(",") if f.strip())
    options = options_from_args(AnalyzeOptions, args, progress=not args.no_progress and sys.stderr.isatty())
    webcams = [s for s in specs if s.startswith(WEBCAM_PREFIX)]
    if webcams:
        if len(specs) > 1:
            raise ValueError("a webcam source cannot be mixed with other inputs")
        return run_webcam(webcams[0], args.output, options, formats)
    if args.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {args.workers}")
    inputs = expand_inputs([s for s in specs if "://" not in s])
    urls = [s for s in specs if "://" in s]
    if urls:
        from mien.data.store import expand_sources

        inputs += expand_sources(urls)
    if not inputs:
        raise ValueError(f"no image or video files found in {', '.join(specs)}")
    t0 = time.perf_counter()
    report = analyze_files(inputs, args.output, options, formats=formats, overlay=args.overlay, plot=args.plot,
                           overwrite=args.overwrite, workers=args.workers, executor=args.executor,
                           ray_address=args.ray_address,
                           log=None if len(inputs) == 1 else lambda line: print(f"mien: skipped {line}",
                                                                                 file=sys.stderr))
    dt = time.perf_counter() - t0
    if len(inputs) == 1 and report.failed:
        from mien.errors import InputError

        raise InputError(report.failed[0]["input"], report.failed[0]["reason"])
    faces = sum(r["faces"] for r in report.ok)
    fps = report.frames / report.wall_seconds if report.wall_seconds else 0.0
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
    from mien.io.video import open_source
    from mien.pipelines.analyze import analyze_source
    from mien.pipelines.batch import output_paths, write_outputs

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
    if "://" not in out_dir:
        os.makedirs(out_dir, exist_ok=True)
    write_outputs(res, spec, outs)
    print(f"mien: {res.summary()}; outputs: {', '.join(outs.values())}")
    return 0

