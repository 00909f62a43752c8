"""`mien app` speed: the Live tab's processed frames/s at 640×480 (server only and in a real browser), and the
Analyze tab's overhead over ``mien.analyze`` on the same file.

Usage:
    python benchmarks/app_live.py [--frames 300] [--video PATH] [--repeats 2] [--camera-fps 30] [--seconds 6]
                                  [--no-browser] [--no-analyze] [--json out.json]

In one process, on real footage (default ../shared/data/samples/WolfgangLanger_Pexels.mp4, 640×360, letterboxed
to 640×480 for the live part):

Live, server only (per frame, default outputs: landmarks, box, id, head-pose axes, gaze rays):
  (a) baseline: ``FrameAnalyzer.process`` alone (what ``mien.analyze`` does per frame);
  (b) ``LiveSession.push``: (a) + the preview drawing;
  (c) (b) + Gradio's JPEG encoding of the preview into its cache (``gr.Image(format="jpeg").postprocess``), the
      server's share of a frame through Gradio's webcam streaming (the Live tab's old path);
  (d) the Live tab's server function: JPEG data URL checked and decoded, (b), the overlay encoded back
      (:mod:`mien.app.live_page`), the server's share of a frame now; (d') the same with the AU and emotion
      heads and their bars (the heads run in their worker thread beside the landmarker).

Live, in the browser (Debian's Chromium at /usr/bin/chromium, headless, driven by Playwright, its fake camera
playing ``--camera-fps`` frames/s of the same frames from a Y4M file; overlay frames shown in the page counted
for ``--seconds`` after a 2 s warm-up; the app served in this process):
  (e) old path: ``gr.Image(streaming=True)`` → ``LiveSession.push`` → ``gr.Image`` (``stream_every=0.04``), as
      the Live tab was built before, in a Blocks of its own;
  (f) the Live tab (``mien app``): default outputs; (g) with the AU and emotion bars ticked.
  Each ``--repeats`` times, in rotating order. Ratios: f/e, f/a, g/f.

Analyze tab (the whole file, default options):
  (A) baseline: ``mien.analyze(video)``;
  (B) ``mien analyze``'s work: (A) + Parquet, CSV, OpenFace CSV, overlay video and plot
      (``mien.pipelines.batch.write_outputs``);
  (C) the tab: upload check by content + copy, (A) with the progress/cancel callback, the same outputs as (B),
      and the HTML table preview.
  (D) the tab with the optional outputs unticked: Parquet and the table preview only.
  Each run ``--repeats`` times, interleaved in rotating order; the best of each is used. Ratios C/A, C/B and
  D/A are printed.

Everything competes for the same cores with whatever else runs on the machine (the browser too: Chromium's
capture, JPEG encoding and drawing share the CPU with the server): ratios within one run count.
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
    from mien.pipelines.live import LiveSession, live_options

    h, w = frames[0].shape[:2]
    fa = FrameAnalyzer(w, h, AnalyzeOptions(identity=False))
    idx = iter(range(10**9))
    a = _rate(lambda f: fa.process(Frame(next(idx), 0.0, f)), frames)
    fa.close()
    from mien.app.live_page import decode_frame, encode_preview

    s = LiveSession()
    b = _rate(s.push, frames)
    out = gr.Image(format="jpeg", streaming=True)
    c = _rate(lambda f: out.postprocess(s.push(f)), frames)
    urls = [encode_preview(f, 85) for f in frames]  # what the page sends (canvas.toDataURL, quality 0.85)
    s.close()
    s, k = LiveSession(), iter(range(10**9))
    d = _rate(lambda u: encode_preview(s.push(decode_frame(u, 10**8), next(k) / 30)), urls)
    s.close()
    s, k = LiveSession(live_options(au=True, emotion=True)), iter(range(10**9))
    e = _rate(lambda u: encode_preview(s.push(decode_frame(u, 10**8), next(k) / 30)), urls)
    s.close()
    return {"analysis_fps": round(a, 1), "live_push_fps": round(b, 1), "gradio_stream_server_fps": round(c, 1),
            "server_function_fps": round(d, 1), "server_function_bars_fps": round(e, 1),
            "push_over_analysis": round(a / b, 3),
            "gradio_stream_server_over_analysis": round(a / c, 3), "server_function_over_analysis": round(a / d, 3)}


def _y4m(frames: list[np.ndarray], path: Path, fps: int) -> Path:
    """``frames`` as a Y4M file (Chromium's fake camera plays it in a loop at ``fps``)."""
    import av

    h, w = frames[0].shape[:2]
    with av.open(str(path), "w", format="yuv4mpegpipe") as out:
        st = out.add_stream("rawvideo", rate=fps)
        st.width, st.height, st.pix_fmt = w, h, "yuv420p"
        for f in frames:
            out.mux(st.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        out.mux(st.encode())
    return path


def _old_stream_demo():
    """The Live tab's old path, in a Blocks of its own: Gradio's webcam streaming into a LiveSession."""
    import gradio as gr

    from mien.pipelines.live import LiveSession

    session = LiveSession()
    with gr.Blocks(analytics_enabled=False) as demo:
        cam = gr.Image(sources=["webcam"], streaming=True, type="numpy", elem_id="live-cam")
        out = gr.Image(streaming=True, elem_id="live-out", interactive=False, format="jpeg")
        cam.stream(lambda im: None if im is None else session.push(im), [cam], [out], stream_every=0.04,
                   concurrency_limit=None, show_progress="hidden")
    demo.queue(api_open=False)
    return demo, session


_COUNT_SRC = """() => { window.srcChanges = 0; let last = null;
    setInterval(() => { const i = document.querySelector('#live-out img');
                        if (i && i.src && i.src !== last) { last = i.src; window.srcChanges++; } }, 4); }"""


def browser(frames: list[np.ndarray], camera_fps: int, seconds: float, repeats: int, chromium: str) -> dict:
    """(e)–(g): overlay frames/s shown in headless Chromium (fake camera) for the old path and the Live tab."""
    import socket
    import tempfile

    from playwright.sync_api import sync_playwright

    from mien.app.main import make_context, serve

    def port() -> int:
        with socket.socket() as so:
            so.bind(("127.0.0.1", 0))
            return so.getsockname()[1]

    tmp = Path(tempfile.mkdtemp(prefix="mien-bench-live-"))
    ctx = make_context()
    clip = _y4m(frames[: camera_fps * 4], tmp / "camera.y4m", camera_fps)
    app_port, old_port = port(), port()
    app = serve(ctx, "127.0.0.1", app_port, block=False, quiet=True)
    old, old_session = _old_stream_demo()
    old.launch(server_name="127.0.0.1", server_port=old_port, prevent_thread_lock=True, quiet=True, ssr_mode=False,
               show_error=False)
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream", f"--use-file-for-fake-video-capture={clip}"]
    runs: dict[str, list[float]] = {"old": [], "tab": [], "tab_bars": []}
    try:
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=chromium, headless=True, args=args)
            bctx = b.new_context(permissions=["camera"], viewport={"width": 1280, "height": 900})
            bctx.set_default_timeout(120_000)

            def measure(mode: str) -> float:
                page = bctx.new_page()
                if mode == "old":
                    page.goto(f"http://127.0.0.1:{old_port}/")
                    page.locator("#live-cam").get_by_text("Click to Access Webcam").click()
                    page.locator("#live-cam button.capture-button").click()
                    page.wait_for_selector("#live-out img[src]")
                    page.evaluate(_COUNT_SRC)
                    count = "window.srcChanges"
                else:
                    page.goto(f"http://127.0.0.1:{app_port}/")
                    page.get_by_role("tab", name="Live").click()
                    if mode == "tab_bars":
                        page.locator("#live-au input").check()
                        page.locator("#live-emotion input").check()
                        page.locator("#live-status").get_by_text("Bars: AU, emotion").wait_for()
                    page.locator("#live-view button.mien-live-start").click()
                    page.wait_for_selector('#live-view img.mien-live-out[src^="data:image/jpeg"]')
                    count = "window.mienLive.shown"
                page.wait_for_timeout(2000)
                n0, t0 = page.evaluate(count), time.perf_counter()
                page.wait_for_timeout(seconds * 1000)
                n1, t1 = page.evaluate(count), time.perf_counter()
                if mode != "old":
                    errors = page.evaluate("window.mienLive.errors")
                    assert errors == 0, page.inner_text("#live-view .mien-live-line")
                page.close()
                return (n1 - n0) / (t1 - t0)

            modes = list(runs)
            for r in range(repeats):
                for m in modes[r % 3:] + modes[:r % 3]:
                    runs[m].append(measure(m))
            b.close()
    finally:
        app.close()
        old.close()
        old_session.close()
        ctx.files.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)
    best = {k: max(v) for k, v in runs.items()}
    return {"camera_fps": camera_fps, "seconds": seconds, "fps": {k: round(v, 1) for k, v in best.items()},
            "all_fps": {k: [round(x, 1) for x in v] for k, v in runs.items()},
            "tab_over_old": round(best["tab"] / best["old"], 2), "bars_over_tab": round(best["tab_bars"] / best["tab"], 2)}


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
    ap.add_argument("--repeats", type=int, default=2, help="interleaved runs of the browser and Analyze comparisons")
    ap.add_argument("--camera-fps", type=int, default=30, help="frame rate of Chromium's fake camera")
    ap.add_argument("--seconds", type=float, default=6.0, help="seconds counted per browser run")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--no-browser", action="store_true", help="skip (e)-(g)")
    ap.add_argument("--no-analyze", action="store_true", help="skip the Analyze tab comparison")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    print(f"host: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.1f} (1 min)")
    frames = _frames(args.video, args.frames)
    lv = live(frames)
    print(f"Live 640x480, {args.frames} frames, server only: (a) analysis alone {lv['analysis_fps']} fps; (b) "
          f"LiveSession.push (analysis + preview) {lv['live_push_fps']} fps (x{lv['push_over_analysis']} time); "
          f"(c) + Gradio JPEG encode (old path) {lv['gradio_stream_server_fps']} fps "
          f"(x{lv['gradio_stream_server_over_analysis']}); (d) the tab's server function (JPEG decode + push + "
          f"encode) {lv['server_function_fps']} fps (x{lv['server_function_over_analysis']}); (d') the same with AU + "
          f"emotion bars {lv['server_function_bars_fps']} fps")
    out = {"live": lv}
    if not args.no_browser:
        br = browser(frames, args.camera_fps, args.seconds, args.repeats, args.chromium)
        f = br["fps"]
        print(f"Live in Chromium (fake camera {args.camera_fps} fps, best of {args.repeats}, {args.seconds:.0f} s each, "
              f"all runs {br['all_fps']}): (e) old gr.Image streaming {f['old']} frames/s; (f) Live tab {f['tab']} "
              f"frames/s = x{br['tab_over_old']} the old path, {f['tab'] / lv['analysis_fps']:.2f} of the analysis "
              f"alone (a); (g) with AU + emotion bars {f['tab_bars']} frames/s (x{br['bars_over_tab']} of f); "
              f"load {os.getloadavg()[0]:.1f}")
        out["browser"] = br
    if not args.no_analyze:
        an = analyze_tab(args.video, args.repeats)
        s = an["seconds"]
        print(f"Analyze tab, {Path(args.video).name} ({an['rows']} rows), best of {args.repeats}: mien.analyze "
              f"{s['A']} s; + mien analyze's outputs {s['B']} s; app tab {s['C']} s -> tab/analyze "
              f"x{an['tab_over_analyze']}, tab/`mien analyze` x{an['tab_over_cli']}; tab with Parquet + table only "
              f"{s['D']} s -> x{an['parquet_tab_over_analyze']} over mien.analyze")
        out["analyze"] = an
    if args.json:
        Path(args.json).write_text(json.dumps(out | {"load": os.getloadavg()}, indent=2))


if __name__ == "__main__":
    main()
