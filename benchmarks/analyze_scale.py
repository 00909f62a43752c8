"""``mien analyze`` at corpus scale: throughput with 1 and N local workers and with Ray, memory per worker.

Usage:
    python benchmarks/analyze_scale.py [VIDEO_OR_FOLDER ...] [--workers 2] [--limit N] [--no-ray] [--no-memory]
        [--json out.json]

In one run, on the same list of videos (default: every clip of ../shared/data/videos/talking and
../shared/data/videos/expressive, 26 clips), ``mien.pipelines.batch.analyze_files`` with the default analysis
options and no overlay/plot (the Parquet dataset only), each into a fresh temporary folder:

  (a) ``workers=1`` (every video in this process, one after another);
  (b) ``workers=N`` local processes (spawn pool, one video per task);
  (c) ``executor="ray"`` with N workers on a local Ray started beforehand with N CPUs (``ray.init`` time is
      printed separately; joining a running cluster costs nothing per run).

Prints frames/s and seconds of video per second for each, the ratios b/a and c/b, and the per-core rate used to
cost a large corpus. ``--memory``: peak resident memory (``ru_maxrss``) of a fresh worker process analysing
growing prefixes of the longest video, beside the number of result rows it held. The runs compete for the
same cores with anything else on the machine: ratios within one run are what count.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from prepare_throughput import _duration  # one container-duration helper for the benchmarks (same folder)

SHARED = Path(__file__).resolve().parents[2] / "shared/data/videos"




def _run(videos: list[str], **kw) -> dict:
    from mien.pipelines.batch import analyze_files

    with tempfile.TemporaryDirectory(prefix="mien-scale-") as d:
        t0 = time.perf_counter()
        rep = analyze_files(videos, d, overlay=False, plot=False, **kw)
        wall = time.perf_counter() - t0
    if rep.failed:
        print(f"  failed: {rep.failed}", file=sys.stderr)
    return {"wall_s": round(wall, 2), "frames": rep.frames, "videos": len(rep.ok),
            "fps": round(rep.frames / wall, 2), "task_s": round(rep.seconds, 2)}


def peak_memory(video: str, end: float | None) -> tuple[float, int]:
    """(peak RSS in MiB, result rows) of a fresh process analysing ``video`` up to ``end`` seconds into a
    temporary results folder, as one worker of ``mien analyze`` does."""
    code = ("import resource, sys, tempfile\n"
            "from mien.pipelines.analyze import AnalyzeOptions\n"
            "from mien.pipelines.batch import analyze_files\n"
            "with tempfile.TemporaryDirectory() as d:\n"
            f"    r = analyze_files([{video!r}], d, AnalyzeOptions(end={end!r}), overlay=False, plot=False)\n"
            "print(r.ok[0]['rows'], resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    rows, kib = out.stdout.split()[-2:]
    return int(kib) / 1024, int(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("videos", nargs="*", default=[str(SHARED / "talking"), str(SHARED / "expressive")])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--limit", type=int, default=None, help="use only the first N videos")
    ap.add_argument("--no-ray", action="store_true")
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    from mien.data.store import expand_sources

    videos = expand_sources(args.videos)[: args.limit]
    seconds = sum(_duration(v) for v in videos)
    n = args.workers
    print(f"{len(videos)} videos, {seconds:.1f} s of video; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores; workers={n}")
    out: dict = {"videos": len(videos), "video_seconds": round(seconds, 2), "cores": os.cpu_count(), "workers": n}

    def show(name: str, r: dict) -> None:
        r["video_s_per_s"] = round(seconds / r["wall_s"], 3)
        out[name] = r
        print(f"  {name:8s} {r['wall_s']:7.1f} s wall, {r['frames']} frames, {r['fps']:6.1f} frames/s, "
              f"{r['video_s_per_s']:.2f} s of video per s")

    show("local_1", _run(videos, workers=1))
    show(f"local_{n}", _run(videos, workers=n))
    if not args.no_ray:
        import ray

        t0 = time.perf_counter()
        ray.init(num_cpus=n, include_dashboard=False, log_to_driver=False)
        out["ray_init_s"] = round(time.perf_counter() - t0, 2)
        try:
            show(f"ray_{n}", _run(videos, workers=n, executor="ray"))
        finally:
            ray.shutdown()
        print(f"  (ray.init {out['ray_init_s']:.1f} s, not included)")
    local = out[f"local_{n}"]["fps"]
    out[f"speedup_local_{n}_vs_1"] = round(local / out["local_1"]["fps"], 3)
    print(f"local {n} workers / 1 worker: {out[f'speedup_local_{n}_vs_1']:.2f}x")
    if not args.no_ray:
        out[f"ray_vs_local_{n}"] = round(out[f"ray_{n}"]["fps"] / local, 3)
        print(f"ray {n} / local {n}: {out[f'ray_vs_local_{n}']:.2f}x")
    per_core = out[f"local_{n}"]["video_s_per_s"] / n
    out["video_s_per_core_s"] = round(per_core, 3)
    hours = 10_000 * 3600 / per_core / 3600
    print(f"per core: {per_core:.2f} s of video per s -> 10,000 h of video = {hours:,.0f} core-hours")

    if not args.no_memory:
        longest = max(videos, key=_duration)
        d = _duration(longest)
        print(f"peak memory of one worker on prefixes of {os.path.basename(longest)} ({d:.1f} s):")
        out["memory"] = []
        for end in (d / 8, d / 4, d / 2, None):
            mib, rows = peak_memory(longest, end)
            out["memory"].append({"end_s": round(end if end is not None else d, 2), "rows": rows,
                                  "peak_mib": round(mib, 1)})
            print(f"  first {end if end is not None else d:5.1f} s: {rows:5d} rows, {mib:6.0f} MiB peak")
        m = out["memory"]
        if m[-1]["rows"] > m[0]["rows"]:
            per_row = (m[-1]["peak_mib"] - m[0]["peak_mib"]) / (m[-1]["rows"] - m[0]["rows"])
            out["memory_kib_per_row"] = round(per_row * 1024, 2)
            print(f"  growth: {per_row * 1024:.1f} KiB per result row (the result of one video is held until "
                  f"it is written: its columns take ~5.7 KiB per row, within the start-up peak for short videos)")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
