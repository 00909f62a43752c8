"""Throughput of ``mien prepare`` (seconds of source video per wall-clock second) next to the bare
decode + landmark rate of the same videos, in the same run.

Usage:
    python benchmarks/prepare_throughput.py [VIDEO_OR_FOLDER ...] [--workers 2] [--clip-seconds 2] [--limit N]
        [--max-faces 2]

Measured, on the same list of videos:
  (a) bare loop, 1 process: PyAV decode + ``to_ndarray("rgb24")`` + MediaPipe ``FaceMesh(refine_landmarks=True)``
      on every frame;
  (b) the same bare loop in ``--workers`` processes (one video per task);
  (c) ``mien.pipelines.prepare.prepare`` with ``--workers`` processes and default settings (random mode,
      4 clips/video, 256-px crops, audio + log-mel/MFCC), into a temporary folder.
Prints the rates and the ratios c/a and c/b. Default videos: ../shared/data/videos/talking/*.mp4.

The bare loop tracks one face (``max_num_faces=1``: the detector runs only when the face is lost); prepare's
default ``--max-faces 2`` runs the detector on every frame to see a second face (track policy "single"), which
alone costs about as much as the landmark model on small talking-head videos. ``--max-faces 1`` measures
prepare with the bare loop's face-mesh work.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from analyze_throughput import baseline as bare  # same bare loop as the analyze benchmark (same folder)

DEFAULT = Path(__file__).resolve().parents[2] / "shared/data/videos/talking"


def _duration(path: str) -> float:
    import av

    with av.open(path) as c:
        s = c.streams.video[0]
        if s.duration is not None:
            return float(s.duration * s.time_base)
        return c.duration / av.time_base


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("videos", nargs="*", default=[str(DEFAULT)])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--clip-seconds", type=float, default=2.0)
    ap.add_argument("--limit", type=int, default=None, help="use only the first N videos")
    ap.add_argument("--max-faces", type=int, default=2, help="prepare's --max-faces (default 2, its default)")
    args = ap.parse_args()

    from mien.data.store import expand_sources
    from mien.pipelines.prepare import PrepareOptions, prepare

    videos = expand_sources(args.videos)[: args.limit]
    total = sum(_duration(v) for v in videos)
    print(f"{len(videos)} videos, {total:.1f} s of video; {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, "
          f"python {platform.python_version()}")

    t0 = time.perf_counter()
    for v in videos:
        bare(v)
    bare1 = total / (time.perf_counter() - t0)
    print(f"(a) bare decode+landmarks, 1 process:        {bare1:6.2f} s video / s")

    t0 = time.perf_counter()
    with mp.get_context("spawn").Pool(args.workers) as pool:
        pool.map(bare, videos, chunksize=1)
    bareN = total / (time.perf_counter() - t0)
    print(f"(b) bare decode+landmarks, {args.workers} processes:       {bareN:6.2f} s video / s")

    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        rep = prepare(videos, os.path.join(d, "ds"), PrepareOptions(clip_seconds=args.clip_seconds,
                                                                         max_faces=args.max_faces),
                      workers=args.workers)
        wall = time.perf_counter() - t0
    rate = total / wall
    print(f"(c) mien prepare, {args.workers} workers, max_faces {args.max_faces} (incl. finalize): {rate:6.2f} s video / s  "
          f"[{rep.samples} clips, {len(rep.failed)} failed, rejected {rep.rejected}]")
    print(f"ratio c/a = {rate / bare1:.2f}   ratio c/b = {rate / bareN:.2f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
