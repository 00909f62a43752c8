"""Frames/s of face reenactors on real crops, as ratios to the classical warp baseline run in the same process.

Each reenactor animates the source crop of ``samples/single_face.jpg`` with the driving crops of
``samples/single_face.mp4`` (cut once, at each reenactor's crop size) in batches of ``--batch``; the time is
``Reenactor.animate`` only (no face finding, no video I/O). Reenactors: "copy", "warp", exported model folders
(``mien export reenact``) and registered model names with random weights, optionally at another crop side
(``reenact-warpguided-tiny@256``: speed does not depend on the weights); ``--end-to-end`` also times the whole ``mien.reenact`` iterator (MediaPipe on every
driving frame, paste-back) for each. The models' own forward speed per config: ``benchmarks/reenact_speed.py``.

    PYTHONPATH=src OMP_NUM_THREADS=2 python benchmarks/reenact_fps.py copy warp EXPORT_DIR --end-to-end
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "samples"


def crops(size: int, margin: float, end: float):
    from mien.io.video import ImageSource, VideoSource
    from mien.pipelines.reenact import FaceCropper

    img = next(iter(ImageSource(DATA / "single_face.jpg"))).image
    fc = FaceCropper(img.shape[1], img.shape[0], size, margin, static=True)
    src = fc(img)
    fc.close()
    v = VideoSource(DATA / "single_face.mp4", end=end)
    fc = FaceCropper(v.info.width, v.info.height, size, margin)
    drv = [c for c in (fc(f.image, f.index) for f in v) if c is not None]
    fc.close()
    return src, drv


def reenactor(spec: str, size: int):
    from mien.models.registry import create_model, list_models
    from mien.pipelines.reenact import load_reenactor

    name, _, side = spec.partition("@")
    if name in list_models("reenact") and not os.path.exists(spec):
        return load_reenactor(create_model(name, **({"size": int(side)} if side else {})))
    return load_reenactor(spec, size=size)


def bench(r, batch: int, repeats: int, end: float) -> dict:
    src, drv = crops(r.size, r.margin, end)
    st = r.encode_source(src)
    r.animate(st, drv[:batch], drv[0])  # warm-up
    t0 = time.perf_counter()
    n = 0
    for _ in range(repeats):
        for b in range(0, len(drv), batch):
            n += len(r.animate(st, drv[b:b + batch], drv[0]))
    return {"reenactor": r.name, "crop": r.size, "animate_fps": n / (time.perf_counter() - t0)}


def end_to_end(r, end: float) -> float:
    import mien

    t0 = time.perf_counter()
    n = sum(1 for _ in mien.reenact(DATA / "single_face.jpg", DATA / "single_face.mp4", model=r, end=end))
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("reenactors", nargs="*", default=["copy", "warp"])
    ap.add_argument("--size", type=int, default=256, help="crop side of copy/warp (px)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--end", type=float, default=1.0, help="seconds of the driving clip")
    ap.add_argument("--end-to-end", action="store_true")
    a = ap.parse_args()
    import torch

    rows = []
    base = None
    for spec in ["warp"] + [s for s in a.reenactors if s != "warp"]:
        r = reenactor(spec, a.size)
        row = bench(r, a.batch, a.repeats, a.end)
        if a.end_to_end:
            row["end_to_end_fps"] = end_to_end(r, a.end)
        base = base or row
        row["animate_vs_warp"] = row["animate_fps"] / base["animate_fps"]
        rows.append(row)
        print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}))
    print(f"torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs; "
          + ", ".join(f"{r['reenactor']} {r['animate_vs_warp']:.2f}x warp" for r in rows))


if __name__ == "__main__":
    main()
