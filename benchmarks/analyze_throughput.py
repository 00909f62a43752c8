"""Throughput of ``mien.analyze`` against a bare PyAV-decode + MediaPipe face-mesh loop, in one process.

Usage:
    python benchmarks/analyze_throughput.py [VIDEO ...] [--repeats 2] [--memory] [--neural [--backend B]]

For each video, (a) the baseline loop — PyAV decode, ``to_ndarray("rgb24")``, MediaPipe
``FaceMesh(refine_landmarks=True)`` — and (b) ``mien.analyze`` with the default outputs (no overlay) are run
alternately ``--repeats`` times; the best frames/s of each and the ratio b/a are printed.
``--memory`` also runs ``mien.analyze`` in fresh processes on growing prefixes of the longest video and prints
peak resident memory for each, to show that memory does not grow with video length.
``--neural`` also times ``mien.analyze(au=True, emotion=True)``; ``--backend`` picks what runs the face-api
networks there (``AnalyzeOptions.backend``: auto = PyTorch, or onnxruntime). Ratios within one process are what
count: absolute frames/s depend on the machine's load.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

DEFAULT_VIDEOS = [
    Path(__file__).resolve().parents[1] / "src/mien/assets/sample_wolfgang_langer_pexels.mp4",
    Path(__file__).resolve().parents[2] / "shared/data/samples/single_face.mp4",
    Path(__file__).resolve().parents[2] / "shared/data/videos/talking/WDA_KatieHill_000.mp4",
    Path(__file__).resolve().parents[2] / "shared/data/videos/talking/face_1.mp4",
    Path(__file__).resolve().parents[2] / "shared/data/videos/expressive/driving_d6.mp4",
]


def baseline(path: str) -> tuple[int, float]:
    import av
    import mediapipe as mp

    from mien.face.landmarker import quiet_native_stderr

    t0 = time.perf_counter()
    n = 0
    with quiet_native_stderr():  # MediaPipe's start-up log lines; not timed differently from mien's
        fm = mp.solutions.face_mesh.FaceMesh(max_num_faces=1, refine_landmarks=True)
        fm.process(np.zeros((64, 64, 3), np.uint8))
    with fm, av.open(path) as c:
        for frame in c.decode(video=0):
            fm.process(frame.to_ndarray(format="rgb24"))
            n += 1
    return n, time.perf_counter() - t0


def mien_run(path: str, **options) -> tuple[int, float]:
    import mien

    t0 = time.perf_counter()
    res = mien.analyze(path, **options)
    return res.meta["frames_processed"], time.perf_counter() - t0


def peak_rss_mb(path: str, end: float) -> float:
    code = (f"import mien, resource; mien.analyze({path!r}, end={end}); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("videos", nargs="*", type=Path)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--memory", action="store_true")
    ap.add_argument("--neural", action="store_true",
                    help="also time mien.analyze(au=True, emotion=True) (face-api net + AU model per face)")
    ap.add_argument("--backend", default="auto", choices=["auto", "torch", "onnxruntime"],
                    help="backend of the face-api nets in the --neural runs (default auto)")
    args = ap.parse_args()
    videos = [v for v in (args.videos or DEFAULT_VIDEOS) if v.exists()]
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, --backend {args.backend}")
    extra = f" {'+au+emotion fps':>15s} {'ratio':>6s}" if args.neural else ""
    print(f"{'video':40s} {'frames':>6s} {'baseline fps':>12s} {'mien fps':>9s} {'ratio':>6s}{extra}")
    for v in videos:
        best_a = best_b = best_c = 0.0
        n = 0
        for _ in range(args.repeats):
            n, dt = baseline(str(v))
            best_a = max(best_a, n / dt)
            n_b, dt = mien_run(str(v))
            best_b = max(best_b, n_b / dt)
            if args.neural:
                n_c, dt = mien_run(str(v), au=True, emotion=True, backend=args.backend)
                best_c = max(best_c, n_c / dt)
        line = f"{v.name[:40]:40s} {n:6d} {best_a:12.1f} {best_b:9.1f} {best_b / best_a:6.2f}"
        if args.neural:
            line += f" {best_c:15.1f} {best_c / best_a:6.2f}"
        print(line)
    if args.memory:
        import av

        def duration(p: Path) -> float:
            with av.open(str(p)) as c:
                return float(c.duration / av.time_base)

        longest = max(videos, key=duration)
        dur = duration(longest)
        print(f"\npeak RSS of mien.analyze on prefixes of {longest.name} ({dur:.1f} s), fresh process each:")
        for frac in (0.25, 0.5, 1.0):
            print(f"  first {frac * dur:6.1f} s: {peak_rss_mb(str(longest), frac * dur):7.1f} MiB")
    print(f"(this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB peak)")


if __name__ == "__main__":
    main()
