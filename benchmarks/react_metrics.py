"""Speed of :func:`mien.metrics.react.react_metrics` against the official-style reference
(``benchmarks/react_official.py``: per-speaker loops, per-pair ``np.cov`` CCC, ``tslearn.metrics.dtw``,
per-lag ``np.corrcoef``, a 2-worker ``multiprocessing.Pool``) on the same synthetic inputs and cores.

Usage:
    python benchmarks/react_metrics.py [--n 1000] [--r 10] [--t 750] [--neighbours 3] [--workers 2]
                                       [--official-speakers 8]

Inputs are synthetic but in the real ranges: 15 AUs in {0, 1} with runs of frames, valence/arousal smooth
random walks in [−1, 1], 8 expression probabilities (softmax of smooth logits) summing to 1; each speaker has
itself plus ``--neighbours`` random appropriate clips. mien runs the full size. The official FRCorr, FRDist
and FRSyn are run on the first ``--official-speakers`` speakers only and extrapolated LINEARLY (FRDist and
FRCorr by the number of (reaction, appropriate listener) pairs, FRSyn by speakers), which the per-speaker
pool makes exact up to the pool's start-up; FRDiv/FRVar/FRDvs run in full. Both sides are warmed up first
(numba and tslearn compile on first use). Needs tslearn for the official DTW (else the plain DP, far slower).

Both wall-clock and CPU time (this process, its threads and the pool's reaped workers) are printed, with the
ratios of each. On a dedicated machine where both sides keep the cores busy they agree; on a shared, loaded
machine the wall-clock ratio swings with the other jobs' load during each side's run, and the CPU ratio is the
one to quote (say which).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import react_official as official  # noqa: E402
from mien.metrics import react  # noqa: E402


def _cpu() -> float:
    """CPU seconds of this process, its threads and its reaped children (the Pool's workers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _runs(rng, shape, p_switch):
    """{0,1} sequences (..., T) that switch state with probability p_switch per frame."""
    switch = rng.random(shape) < p_switch
    start = rng.random(shape[:-1] + (1,)) < 0.3
    return (np.cumsum(switch, -1) + start) % 2


def synth(rng, lead: tuple, t: int) -> np.ndarray:
    """(*lead, T, 25) float32 attributes in the REACT ranges."""
    au = np.moveaxis(_runs(rng, lead + (15, t), 0.03), -2, -1).astype(np.float32)
    va = np.clip(np.cumsum(rng.normal(0, 0.05, lead + (t, 2)), -2) * 0.3, -1, 1)
    logits = np.cumsum(rng.normal(0, 0.2, lead + (t, 8)), -2)
    e = np.exp(logits - logits.max(-1, keepdims=True))
    e /= e.sum(-1, keepdims=True)
    return np.concatenate([au, va, e], -1).astype(np.float32)


def appropriateness(rng, n: int, extra: int) -> np.ndarray:
    a = np.eye(n, dtype=bool)
    for k in range(n):
        a[k, rng.choice(n, extra, replace=False)] = True
    return a


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--r", type=int, default=10)
    ap.add_argument("--t", type=int, default=750)
    ap.add_argument("--neighbours", type=int, default=3, help="random appropriate clips per speaker besides itself")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--official-speakers", type=int, default=8)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    n, r, t = args.n, args.r, args.t
    pred = synth(rng, (n, r), t)
    listener, speaker = synth(rng, (n,), t), synth(rng, (n,), t)
    a = appropriateness(rng, n, args.neighbours)
    pairs = int(a.sum()) * r
    print(f"host: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()}")
    print(f"inputs: N={n} R={r} T={t}, {a.sum() / n:.2f} appropriate listeners per speaker "
          f"→ {pairs} DTW/CCC pairs; workers={args.workers}")

    # warm-up: numba (mien) and tslearn compile on first use
    tw = time.perf_counter()
    react.react_metrics(pred[:3, :2, :60], listener[:3, :60], speaker[:3, :60], np.ones((3, 3), bool),
                        workers=1, max_lag=10)
    print(f"mien warm-up (numba compile): {time.perf_counter() - tw:.1f} s")
    official.dtw(pred[0, 0, :20, :15].astype(np.float64), listener[0, :20, :15].astype(np.float64))

    times, cpus = {}, {}
    p64, l64, s64 = (x.astype(np.float64) for x in (pred, listener, speaker))  # both sides get float64
    t0, c0 = time.perf_counter(), _cpu()
    ours = {}
    w = args.workers
    for name, fn in [("FRCorr", lambda: react.frcorr(p64, l64, a, workers=w)),
                     ("FRDist", lambda: react.frdist(p64, l64, a, workers=w)),
                     ("FRDiv", lambda: react.frdiv(p64)), ("FRVar", lambda: react.frvar(p64)),
                     ("FRDvs", lambda: react.frdvs(p64)), ("FRSyn", lambda: react.frsyn(p64, s64, workers=w))]:
        ts, cs = time.perf_counter(), _cpu()
        ours[name] = fn()
        times[name], cpus[name] = time.perf_counter() - ts, _cpu() - cs
    ours_total, ours_cpu = time.perf_counter() - t0, _cpu() - c0
    print(f"mien  : total {ours_total:.1f} s  " + "  ".join(f"{k} {v:.2f}s" for k, v in times.items()))
    print(f"        CPU {ours_cpu:.1f} s  " + "  ".join(f"{k} {v:.2f}s" for k, v in cpus.items()))
    print("        values " + "  ".join(f"{k} {v:.4f}" for k, v in ours.items()))

    ks = list(range(min(args.official_speakers, n)))
    sub_pairs = int(a[ks].sum()) * r
    off, off_cpu = {}, {}
    for name, fn, scale in [
            ("FRCorr", lambda: official.frcorr(p64, l64, a, args.workers, speakers=ks), pairs / sub_pairs),
            ("FRDist", lambda: official.frdist(p64, l64, a, args.workers, speakers=ks), pairs / sub_pairs),
            ("FRDiv", lambda: official.frdiv(p64), 1), ("FRVar", lambda: official.frvar(p64), 1),
            ("FRDvs", lambda: official.frdvs(p64), 1),
            ("FRSyn", lambda: official.frsyn(p64, s64, args.workers, speakers=ks), n / len(ks))]:
        ts, cs = time.perf_counter(), _cpu()
        fn()
        off[name], off_cpu[name] = (time.perf_counter() - ts) * scale, (_cpu() - cs) * scale
    off_total, off_cpu_total = sum(off.values()), sum(off_cpu.values())
    print(f"official (FRCorr/FRDist/FRSyn measured on {len(ks)} speakers = {sub_pairs} pairs, extrapolated):"
          f" total {off_total:.1f} s  " + "  ".join(f"{k} {v:.2f}s" for k, v in off.items()))
    print(f"        CPU {off_cpu_total:.1f} s  " + "  ".join(f"{k} {v:.2f}s" for k, v in off_cpu.items()))
    print(f"ratio official/mien, wall: total {off_total / ours_total:.1f}x  "
          + "  ".join(f"{k} {off[k] / times[k]:.1f}x" for k in off))
    print(f"ratio official/mien, CPU (all processes and threads): total {off_cpu_total / ours_cpu:.1f}x  "
          + "  ".join(f"{k} {off_cpu[k] / max(cpus[k], 1e-9):.1f}x" for k in off))
    print(f"load at end {os.getloadavg()}")


if __name__ == "__main__":
    main()
