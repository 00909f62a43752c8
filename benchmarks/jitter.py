"""Landmark jitter of ``mien analyze`` with and without ``--smooth`` (One Euro filter), on real clips.

Usage:
    python benchmarks/jitter.py [VIDEO ...] [--window 1.0]

For each video: analyse it twice (``smooth=False`` / ``smooth=True``), pick the stillest window of ``--window``
seconds of the first track (smallest spread of the unsmoothed head pose), and print the jitter there — mean
frame-to-frame landmark displacement in pixels (:func:`mien.face.smoothing.landmark_jitter`) — before and after,
plus the jitter over the whole track (which includes real movement) and the mean absolute change smoothing makes
to the landmarks (a bound on the lag it adds).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
DEFAULT_VIDEOS = [SHARED / "samples/single_face.mp4", ROOT / "src/mien/assets/sample_wolfgang_langer_pexels.mp4",
                  SHARED / "videos/talking/WDA_KatieHill_000.mp4"]


def stillest_window(t: np.ndarray, pose: np.ndarray, seconds: float) -> np.ndarray:
    """Row indices of the ``seconds``-long window whose head pose (N, 3) degrees varies least (sum of stds)."""
    best, best_idx = np.inf, np.arange(min(len(t), 2))
    for i in range(len(t)):
        if t[i] + seconds > t[-1]:
            break
        j = int(np.searchsorted(t, t[i] + seconds))
        if j - i < 5 or t[j - 1] - t[i] < 0.9 * seconds:  # too few frames, or a gap in the track
            continue
        s = float(pose[i:j].std(0).sum())
        if s < best:
            best, best_idx = s, np.arange(i, j)
    return best_idx


def main() -> None:
    from mien.face.smoothing import landmark_jitter
    from mien.pipelines.analyze import analyze

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("videos", nargs="*", type=Path)
    ap.add_argument("--window", type=float, default=1.0, help="length in s of the still segment")
    args = ap.parse_args()
    videos = [v for v in (args.videos or DEFAULT_VIDEOS) if v.exists()]
    print(f"{'video':34s} {'frames':>6s} {'still window':>13s} {'jitter raw':>10s} {'smoothed':>9s} "
          f"{'whole raw':>9s} {'smoothed':>9s} {'mean shift':>10s}")
    for v in videos:
        raw = analyze(v, identity=False)
        smo = analyze(v, identity=False, smooth=True)
        fid = raw.face_id[0]
        a, b = raw.for_face(fid), smo.for_face(fid)
        pose = np.stack([a.yaw_deg, a.pitch_deg, a.roll_deg], 1)
        w = stillest_window(a.t_sec, pose, args.window)
        shift = float(np.linalg.norm(a.landmarks[..., :2] - b.landmarks[..., :2], axis=-1).mean())
        print(f"{v.name[:34]:34s} {len(a):6d} {a.t_sec[w[0]]:5.1f}-{a.t_sec[w[-1]]:5.1f} s "
              f"{landmark_jitter(a.landmarks[w]):10.3f} {landmark_jitter(b.landmarks[w]):9.3f} "
              f"{landmark_jitter(a.landmarks):9.3f} {landmark_jitter(b.landmarks):9.3f} {shift:10.3f}")
    print("jitter: mean frame-to-frame landmark displacement (px); mean shift: mean |smoothed - raw| (px)")


if __name__ == "__main__":
    main()
