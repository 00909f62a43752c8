"""Per-frame landmark fit of ``mien-face``: speed and landmark error on held-out clips.

Usage:
    python benchmarks/face3d_fit.py [CLIP ...] [--model PATH] [--cache DIR] [--dlib-model PATH] [--dlib-every 5]

Default clips: the three held out from the shipped model (``talking/face_5``, ``talking/Input__00098``,
``expressive/driving_d9`` in ../shared/data/videos). Each clip is analysed by ``mien.analyze`` (or read from
``--cache DIR/<stem>.parquet``), then fitted three ways:

- ``pose only``: the mean shape under a similarity (no coefficients) — how far a rigid face is;
- ``per frame``: pose, shape, expression, jaw and eyelids per frame (``fit_landmarks``);
- ``shared shape``: one identity per clip (``shared_shape=True``), the rest per frame.

Jitter (``mien analyze --face3d`` with and without ``--face3d-smooth``, :mod:`mien.heads.face3d`): mean
frame-to-frame motion of the fitted mesh on still segments (:func:`mien.pipelines.face3d.still_frames`: the
low-passed landmarks move less than 0.1 inter-ocular distances per second), in image px for the posed mesh
(x, y) and in mm for the unposed mesh (expression, jaw and eyelid jitter only); MediaPipe's raw points for
scale; with the head's time per frame (shared-shape fit per track + fixed-shape per-frame fits).

Errors: RMS image-plane distance (px) between the fitted mesh and MediaPipe's 468 mesh points, and the same
divided by the inter-ocular distance (outer eye corners 33/263). This measures the model's reach on unseen
faces, not accuracy: the target is MediaPipe itself. With dlib (``pip install dlib`` and the
``shape_predictor_68_face_landmarks.dat`` of ``face-recognition-models``) it also reports the 300-W-style
NME (mean point error / inter-ocular distance of dlib's outer eye corners) of the fitted mesh and of the raw
MediaPipe points against dlib's independent 68-point detector, on every ``--dlib-every``-th frame where dlib
finds one face.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "videos"
HELD_OUT = [SHARED / "talking/face_5.mp4", SHARED / "talking/Input__00098.mp4", SHARED / "expressive/driving_d9.mp4"]


def _results(clip: Path, cache: Path | None):
    import mien

    if cache is not None and (cache / f"{clip.stem}.parquet").is_file():
        return mien.read_results(cache / f"{clip.stem}.parquet")
    return mien.analyze(clip, identity=False)


def _dlib_points(clip: Path, frames: np.ndarray, predictor_path: str):
    """{frame index: (68, 2)} from dlib's HOG detector + 68-point predictor (one face only)."""
    import cv2
    import dlib

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(predictor_path)
    wanted = set(int(f) for f in frames)
    out = {}
    cap = cv2.VideoCapture(str(clip))
    i = 0
    while wanted:
        ok, bgr = cap.read()
        if not ok:
            break
        if i in wanted:
            wanted.discard(i)
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            dets = detector(rgb, 1 if min(rgb.shape[:2]) < 400 else 0)  # upsample only small frames
            if len(dets) == 1:
                shape = predictor(rgb, dets[0])
                out[i] = np.array([[p.x, p.y] for p in shape.parts()], np.float64)
        i += 1
    cap.release()
    return out


def _jitter(clip: Path, res) -> None:
    from mien.heads.face3d import Face3DHead
    from mien.pipelines.face3d import fit_result, jitter_report

    cols = res.columns()
    lm = cols["landmarks"][np.lexsort((cols["face_id"], cols["frame"]))]
    for smooth in (False, True):
        head = Face3DHead(smooth=smooth)
        t0 = time.perf_counter()
        fit = fit_result(res, head=head)
        ms = (time.perf_counter() - t0) / max(len(res), 1) * 1e3
        j = jitter_report(fit, lm)
        print(f"{clip.stem:18s} jitter {'smoothed' if smooth else 'raw':8s} still pairs {j['still_pairs']:3d}  "
              f"posed {j['posed_px']:.3f} px  unposed {j['shape_mm']:.3f} mm  (MediaPipe {j['landmarks_px']:.3f} px)"
              f"  head {ms:5.1f} ms/frame")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("clips", nargs="*", type=Path, default=HELD_OUT)
    ap.add_argument("--model", default=None, help="mien-face .npz (default: the shipped model)")
    ap.add_argument("--cache", type=Path, default=None, help="folder of <stem>.parquet analysis results")
    ap.add_argument("--dlib-model", default=None, help="shape_predictor_68_face_landmarks.dat")
    ap.add_argument("--dlib-every", type=int, default=5)
    args = ap.parse_args()

    import torch

    from mien.models.face3d import fit_landmarks, landmark_error, load_face_model
    from mien.models.face3d.fit import N_MEDIAPIPE

    torch.set_num_threads(1)
    model = load_face_model(args.model)
    predictor = args.dlib_model
    if predictor is None:
        try:
            import face_recognition_models

            predictor = face_recognition_models.pose_predictor_model_location()
        except ImportError:
            predictor = None
    try:
        import dlib  # noqa: F401
    except ImportError:
        if predictor is not None:
            print("dlib is not installed: skipping the dlib comparison")
        predictor = None
    print(f"model {model.name}: S={model.n_shape} E={model.n_expression}; mesh-point error vs MediaPipe (px, /IOD)")
    for clip in args.clips:
        res = _results(clip, args.cache)
        cols = res.columns()
        lm = cols["landmarks"].astype(np.float64)
        iod = np.linalg.norm(lm[:, 33, :2] - lm[:, 263, :2], axis=1)
        fits = {}
        for name, kw in (("pose only", dict(n_shape=0, n_expression=0)), ("per frame", {}),
                         ("shared shape", dict(shared_shape=True))):
            t0 = time.perf_counter()
            fit = fit_landmarks(lm, model, **kw)
            ms = (time.perf_counter() - t0) / len(lm) * 1e3
            err = np.sqrt((np.linalg.norm(fit["landmarks"][:, :468, :2] - lm[:, :468, :2], axis=-1) ** 2).mean(1))
            fits[name] = fit
            print(f"{clip.stem:18s} {name:12s} frames {len(lm):4d}  {ms:6.1f} ms/frame  RMS {err.mean():5.2f} px "
                  f"(median {np.median(err):5.2f})  /IOD {np.mean(err / iod):.4f}")
        _jitter(clip, res)
        if predictor is None:
            continue
        frames = cols["frame"][:: args.dlib_every]
        ref = _dlib_points(clip, frames, predictor)
        rows = [i for i, f in enumerate(cols["frame"]) if int(f) in ref]
        if not rows:
            print(f"{clip.stem:18s} dlib found no single face")
            continue
        r68 = np.stack([ref[int(cols["frame"][i])] for i in rows])
        raw = np.full((len(rows), N_MEDIAPIPE, 3), np.nan)
        raw[:] = lm[rows]
        for name, pts in (("MediaPipe raw", raw), ("pose-only fit", fits["pose only"]["landmarks"][rows]),
                          ("per-frame fit", fits["per frame"]["landmarks"][rows]),
                          ("shared-shape fit", fits["shared shape"]["landmarks"][rows])):
            full = landmark_error(pts, r68)
            inner = landmark_error(pts, r68, jaw_contour=False)
            print(f"{clip.stem:18s} vs dlib-68 {name:16s} n={len(rows):3d}  NME {full['nme'].mean():.4f} "
                  f"({full['px'].mean():5.2f} px)  inner-51 NME {inner['nme'].mean():.4f}")


if __name__ == "__main__":
    main()
