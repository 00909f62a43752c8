"""`mien app` speed: the Live tab's processed frames/s at 640×480, and the Analyze tab's overhead over
``mien.analyze`` on the same file.

Usage:
    python benchmarks/app_live.py [--frames 300] [--video PATH] [--repeats 2] [--json out.json]

In one process, on real footage (default ../shared/data/samples/WolfgangLanger_Pexels.mp4, 640×360, letterboxed
to 640×480 for the live part):

Live (per frame, default outputs: landmarks, box, id, head-pose axes, gaze rays):
  (a) baseline: ``FrameAnalyzer.process`` alone (what ``mien.analyze`` does per frame);
  (b) ``LiveSession.push``: (a) + the preview drawing (what the Live tab's handler calls);
  (c) (b) + Gradio's JPEG encoding of the preview into its cache (``gr.Image(format="jpeg").postprocess``),
      i.e. the server's whole share of a frame; the browser's round trip (capture, upload, download, one frame
      in flight at a time) comes on top and is measured by tests/test_app_browser.py.

Analyze tab (the whole file, default options):
  (A) baseline: ``mien.analyze(video)``;
  (B) ``mien analyze``'s work: (A) + Parquet, CSV, OpenFace CSV, overlay video and plot
      (``mien.pipelines.batch.write_outputs``);
  (C) the tab: upload check by content + copy, (A) with the progress/cancel callback, the same outputs as (B),
      and the HTML table preview.
  (D) the tab with the optional outputs unticked: Parquet and the table preview only.
  Each run ``--repeats`` times, interleaved in rotating order; the best of each is used. Ratios C/A, C/B and
  D/A are printed.

Everything competes for the same cores with whatever else runs on the machine: ratios within one run count.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import threading
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared/data"


def _frames(video: str, n: int, size=(640, 480)) -> list[np.ndarray]:
    """``n`` frames of ``video`` (cycled), letterboxed into ``size``."""
    import av

    w, h = size
    out: list[np.ndarray] = []
    with av.open(video) as c:
        for fr in c.decode(video=0):
            s = min(w / fr.width, h / fr.height)
            img = fr.reformat(width=round(fr.width * s) // 2 * 2, height=round(fr.height * s) // 2 * 2,
                              format="rgb24").to_ndarray()
            canvas = np.zeros((h, w, 3), np.uint8)
            y0, x0 = (h - img.shape[0]) // 2, (w - img.shape[1]) // 2
            canvas[y0:y0 + img.shape[0], x0:x0 + img.shape[1]] = img
            out.append(canvas)
            if len(out) >= n:
                break
    while len(out) < n:
        out += out[: n - len(out)]
    return out


def _rate(fn, frames: list[np.ndarray], warmup: int = 10) -> float:
    for f in frames[:warmup]:
        fn(f)
    t0 = time.perf_counter()
    for f in frames[warmup:]:
        fn(f)
    return (len(frames) - warmup) / (time.perf_counter() - t0)


def live(frames: list[np.ndarray]) -> dict:
    import gradio as gr

    from mien.io.video import Frame
    from mien.pipelines.analyze import AnalyzeOptions
    from mien.pipelines.frame_analyzer import FrameAnalyzer
    from mien.pipelines.live import LiveSession

    h, w = frames[0].shape[:2]
    fa = FrameAnalyzer(w, h, AnalyzeOptions(identity=False))
    idx = iter(range(10**9))
    a = _rate(lambda f: fa.process(Frame(next(idx), 0.0, f)), frames)
    fa.close()
    s = LiveSession()
    b = _rate(s.push, frames)
    out = gr.Image(format="jpeg", streaming=True)
    c = _rate(lambda f: out.postprocess(s.push(f)), frames)
    s.close()
    return {"analysis_fps": round(a, 1), "live_push_fps": round(b, 1), "live_server_fps": round(c, 1),
            "push_over_analysis": round(a / b, 3), "server_over_analysis": round(a / c, 3)}


def analyze_tab(video: str, repeats: int) -> dict:
    from mien.app.main import make_context
    from mien.app.tabs.analyze import FORMATS, run_analysis
    from mien.app.tabs.common import table_html
    from mien.pipelines.analyze import AnalyzeOptions, analyze
    from mien.pipelines.batch import output_paths, write_outputs

    ctx = make_context()
    opts = AnalyzeOptions()
    times: dict[str, list[float]] = {"A": [], "B": [], "C": [], "D": []}
    rows = {}
    try:
        analyze(video, opts, end=0.5)  # warm-up: model loading, first-call costs
        up = ctx.files.uploads / "bench"
        up.mkdir()
        shutil.copyfile(video, up / Path(video).name)  # the upload, as Gradio stores it (not timed)

        def run_a():
            rows["A"] = len(analyze(video, opts))

        def run_b():
            res = analyze(video, opts)
            write_outputs(res, video, output_paths([video], str(ctx.files.job("cli")), FORMATS, overlay=True,
                                                   plot=True)[0])

        def run_c():
            out = run_analysis(ctx, str(up / Path(video).name), opts, progress=lambda *a, **k: None,
                               cancel=threading.Event())
            table_html(out["result"])
            rows["C"] = len(out["result"])

        def run_d():
            out = run_analysis(ctx, str(up / Path(video).name), opts, progress=lambda *a, **k: None,
                               cancel=threading.Event(), formats=("parquet",), overlay=False, plot=False)
            table_html(out["result"])

        runs = {"A": run_a, "B": run_b, "C": run_c, "D": run_d}
        for r in range(repeats):  # interleaved, the order rotated each round (the load of the machine drifts)
            for k in list(runs)[r % 4:] + list(runs)[:r % 4]:
                t0 = time.perf_counter()
                runs[k]()
                times[k].append(time.perf_counter() - t0)
    finally:
        ctx.files.cleanup()
    assert rows["A"] == rows["C"], rows
    best = {k: min(v) for k, v in times.items()}
    return {"rows": rows["A"], "seconds": {k: round(v, 2) for k, v in best.items()},
            "all_seconds": {k: [round(x, 2) for x in v] for k, v in times.items()},
            "tab_over_analyze": round(best["C"] / best["A"], 3), "tab_over_cli": round(best["C"] / best["B"], 3),
            "parquet_tab_over_analyze": round(best["D"] / best["A"], 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--video", default=str(SHARED / "samples/WolfgangLanger_Pexels.mp4"))
    ap.add_argument("--frames", type=int, default=300, help="frames pushed through the live path")
    ap.add_argument("--repeats", type=int, default=2, help="interleaved runs of the Analyze comparison")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    print(f"host: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.1f} (1 min)")
    lv = live(_frames(args.video, args.frames))
    print(f"Live 640x480, {args.frames} frames: analysis alone {lv['analysis_fps']} fps; LiveSession.push (analysis "
          f"+ preview) {lv['live_push_fps']} fps (x{lv['push_over_analysis']} time); + Gradio JPEG encode "
          f"{lv['live_server_fps']} fps (x{lv['server_over_analysis']} time)")
    an = analyze_tab(args.video, args.repeats)
    s = an["seconds"]
    print(f"Analyze tab, {Path(args.video).name} ({an['rows']} rows), best of {args.repeats}: mien.analyze "
          f"{s['A']} s; + mien analyze's outputs {s['B']} s; app tab {s['C']} s -> tab/analyze "
          f"x{an['tab_over_analyze']}, tab/`mien analyze` x{an['tab_over_cli']}; tab with Parquet + table only "
          f"{s['D']} s -> x{an['parquet_tab_over_analyze']} over mien.analyze")
    if args.json:
        Path(args.json).write_text(json.dumps({"live": lv, "analyze": an, "load": os.getloadavg()}, indent=2))


if __name__ == "__main__":
    main()
