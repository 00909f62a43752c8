"""Cost of mien's differentiable soft rasteriser (SoftRas in PyTorch, :mod:`mien.models.face3d.raster`) against
OpenCV's painter's-algorithm mesh render (:func:`mien.viz.mesh.render_mesh`, no gradients) of the same posed
``mien-face`` meshes, in one process.

Usage:
    python benchmarks/face3d_raster.py [--sizes 64 128 224] [--batch 8] [--repeats 3] [--threads 1]

For each crop size S: seconds per face of (a) OpenCV ``render_mesh`` (898 triangles, anti-aliased fills), (b) the
soft rasteriser's forward (shaded + normals + depth + silhouette, :func:`mien.models.face3d.render_geometry`) and
(c) forward + backward to the pose/camera parameters, and the ratios b/a and c/a. The machine may be shared with
other jobs: the ratios within one run are what count.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from mien.models.face3d import Face3DParams, load_face_model, project, render_geometry
from mien.models.face3d.encoders import default_camera
from mien.models.face3d.params import to_pixels
from mien.viz.mesh import render_mesh


def _params(fm, b: int) -> Face3DParams:
    g = torch.Generator().manual_seed(0)
    return Face3DParams(torch.zeros(b, fm.n_shape), torch.randn(b, fm.n_expression, generator=g) * 0.3,
                        torch.zeros(b, 3), torch.zeros(b, 2), torch.randn(b, 3, generator=g) * 0.2,
                        torch.tensor([default_camera(fm)] * b))


def _best(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 224])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    fm = load_face_model()
    p = _params(fm, a.batch)
    print(f"{'S':>5} {'opencv s/face':>14} {'soft fwd s/face':>16} {'soft fwd+bwd s/face':>20} {'fwd/cv':>8} "
          f"{'fwd+bwd/cv':>11}")
    for s in a.sizes:
        with torch.no_grad():
            n, _ = project(fm, p)
        verts = torch.cat([to_pixels(n, s), n[..., 2:]], -1).numpy().astype(np.float64)

        def cv(s=s, verts=verts):
            for v in verts:
                render_mesh((s, s), v, fm.triangles)

        def fwd(s=s):
            with torch.no_grad():
                render_geometry(fm, p, s)

        def fwd_bwd(s=s):
            q = p.replace(rotation=p.rotation.clone().requires_grad_(True), camera=p.camera.clone().requires_grad_(True))
            g = render_geometry(fm, q, s)
            (g["shaded"].sum() + g["mask"].sum()).backward()

        t_cv, t_f, t_fb = (_best(f, a.repeats) / a.batch for f in (cv, fwd, fwd_bwd))
        print(f"{s:>5} {t_cv:>14.4f} {t_f:>16.4f} {t_fb:>20.4f} {t_f / t_cv:>8.1f} {t_fb / t_cv:>11.1f}")


if __name__ == "__main__":
    main()
