"""Inference speed of the reenactment models on this machine (random weights: speed does not depend on them).

Per driver frame (batch 1): ``encode_motion`` + ``decode`` with the source's appearance encoded once (the
streaming path of ``mien reenact``); the student: one forward per frame. The baseline, run in the same process,
is the plain copy of the source crop (``copy-the-source``), so the printed ratio is frames/s of the model over
frames/s of copying. The warp-guided refiner: its forward on a warped crop (the mesh warp itself is timed by
``benchmarks/reenact_fps.py``); ``NAME@SIDE`` runs a model at another crop side. Usage::

    python benchmarks/reenact_speed.py [--threads 2] [--seconds 5] [--models reenact-tiny reenact-warpguided-tiny@256 ...]
"""

from __future__ import annotations

import argparse
import time

import torch

from mien.models.registry import create_model


def _rate(fn, seconds: float, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or n < 3:
        fn()
        n += 1
    return n / (time.perf_counter() - t0)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--models", nargs="+",
                   default=["reenact-tiny", "reenact-base", "reenact-student-tiny", "reenact-student-base"])
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {args.threads} thread(s), batch 1, {args.seconds:.0f} s per model")
    print(f"{'model':24s} {'size':>6s} {'fps':>9s} {'ms/frame':>9s} {'copy fps':>10s} {'ratio':>8s}")
    for name in args.models:
        base, _, side = name.partition("@")
        m = create_model(base, **({"size": int(side)} if side else {})).eval()
        s = m.size
        src, drv, pose = torch.rand(1, 3, s, s), torch.rand(1, 3, s, s), torch.zeros(1, 6)
        with torch.inference_mode():
            if base.startswith("reenact-warpguided"):
                flow, pts = torch.zeros(1, 2, s, s), torch.rand(1, 468, 2) * s

                def step(m=m, drv=drv, src=src, flow=flow, pts=pts):
                    return m(drv, src, flow, pts)
            elif base.startswith("reenact-student"):
                idx = torch.zeros(1, dtype=torch.long)

                def step(m=m, drv=drv, idx=idx):
                    return m(drv, idx)
            else:
                app, m_s = m.encode_appearance(src), m.encode_motion(src, pose)

                def step(m=m, drv=drv, pose=pose, app=app, m_s=m_s):
                    return m.decode(app, m_s, m.encode_motion(drv, pose))
            fps = _rate(step, args.seconds)
            copy = _rate(lambda src=src: src.clone(), min(args.seconds, 1.0))
        print(f"{name:24s} {s:>4d}² {fps:9.2f} {1000 / fps:9.1f} {copy:10.0f} {fps / copy:8.2e}")


if __name__ == "__main__":
    main()
