"""Temporal smoothing of per-track signals (landmarks, head pose, gaze) with the One Euro filter, and a jitter
measure.

The One Euro filter (Casiez, Roussel & Vogel, "1€ Filter: A Simple Speed-based Low-pass Filter for Noisy Input in
Interactive Systems", CHI 2012) is a first-order low-pass filter whose cutoff frequency rises with the signal's
speed: slow movements (a face holding still) are smoothed strongly, removing jitter; fast ones get a high cutoff,
so little lag. Per sample i at time t_i (s), with Te = t_i − t_{i−1} and α(fc) = 1 / (1 + 1/(2π fc Te)):

    dx̂_i = dx̂_{i−1} + α(d_cutoff) · ((x_i − x̂_{i−1}) / Te − dx̂_{i−1})
    fc   = min_cutoff + beta · |dx̂_i|
    x̂_i  = x̂_{i−1} + α(fc) · (x_i − x̂_{i−1})

This is a vectorised implementation (all coordinates of a frame at once, loop over time) over the timestamps
of the frames actually processed, so a stride (``every``) or dropped frames are handled. (The PyPI package
``oneeurofilter`` filters one scalar per call; vectorised over 478 × 3 landmark coordinates it would be ~1000×
the Python calls.) Parameters are per signal, in the signal's units per second for ``beta``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class OneEuroParams:
    """One Euro filter parameters.

    Attributes:
        min_cutoff: cutoff frequency (Hz) at zero speed; lower = smoother when still, more lag.
        beta: cutoff increase per unit of speed (1/unit); higher = less lag on fast movements.
        d_cutoff: cutoff frequency (Hz) of the speed estimate.
    """

    min_cutoff: float = 1.0
    beta: float = 0.0
    d_cutoff: float = 1.0


SMOOTHING = {
    "landmarks": OneEuroParams(min_cutoff=1.0, beta=0.05),  # px; beta per px/s
    "pose": OneEuroParams(min_cutoff=1.0, beta=0.1),         # deg and mm; beta per deg/s (mm/s)
    "gaze": OneEuroParams(min_cutoff=1.0, beta=0.1),         # deg; beta per deg/s
}
"""Default parameters per signal group of ``mien analyze --smooth`` (recorded in ``meta["smoothing"]``)."""


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    tau = 1.0 / (2.0 * np.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


def one_euro(x: np.ndarray, t: np.ndarray, params: OneEuroParams = OneEuroParams()) -> np.ndarray:
    """One Euro-filter a time series.

    Args:
        x: (T, ...) samples in time order; NaN samples are passed through and do not update the filter.
        t: (T,) strictly increasing times in seconds.
        params: :class:`OneEuroParams`.

    Returns:
        float array like ``x`` (same dtype for floats): the filtered series; the first sample is unchanged.

    Raises:
        ValueError: ``t`` not strictly increasing, or lengths differ.
    """
    x = np.asarray(x)
    t = np.asarray(t, np.float64)
    if len(x) != len(t):
        raise ValueError(f"one_euro: {len(x)} samples but {len(t)} times")
    if len(t) > 1 and np.any(np.diff(t) <= 0):
        raise ValueError("one_euro: times must be strictly increasing")
    out_dtype = x.dtype if x.dtype.kind == "f" else np.float64
    xs = x.astype(np.float64)
    out = xs.copy()
    if len(xs) < 2:
        return out.astype(out_dtype)
    prev = xs[0].copy()
    dprev = np.zeros_like(prev)
    t_prev = np.full(prev.shape, t[0])
    for i in range(1, len(xs)):
        cur = xs[i]
        ok = np.isfinite(cur)
        fresh = ok & ~np.isfinite(prev)  # first finite value after NaNs: start from it
        prev = np.where(fresh, cur, prev)
        t_prev = np.where(fresh, t[i], t_prev)
        dt = np.maximum(t[i] - t_prev, 1e-6)
        a_d = _alpha(params.d_cutoff, dt)
        dx = (cur - prev) / dt
        dcur = dprev + a_d * (dx - dprev)
        a = _alpha(params.min_cutoff + params.beta * np.abs(dcur), dt)
        new = prev + a * (cur - prev)
        upd = ok & ~fresh
        out[i] = np.where(upd, new, cur)
        prev = np.where(upd, new, prev)
        dprev = np.where(upd, dcur, dprev)
        t_prev = np.where(upd, t[i], t_prev)
    return out.astype(out_dtype)


def smooth_tracks(columns: dict[str, np.ndarray], face_id: np.ndarray, t_sec: np.ndarray,
                  groups: dict[str, tuple[str, ...]], params: dict[str, OneEuroParams] | None = None) -> None:
    """One Euro-filter column groups per track, in place.

    Args:
        columns: {name: (N, ...) array}, rows sorted by time within each track.
        face_id: (N,) track id per row. t_sec: (N,) seconds.
        groups: {group: column names} (e.g. ``{"pose": ("yaw_deg", …)}``); columns of a group share its
            parameters.
        params: {group: :class:`OneEuroParams`} (default :data:`SMOOTHING`).
    """
    params = params or SMOOTHING
    for fid in np.unique(face_id):
        m = np.nonzero(face_id == fid)[0]
        if len(m) < 2:
            continue
        for group, names in groups.items():
            for name in names:
                columns[name][m] = one_euro(columns[name][m], t_sec[m], params[group])


def smoothing_meta(params: dict[str, OneEuroParams] | None = None) -> dict:
    """``meta["smoothing"]`` entry: the filter and its parameters per signal group."""
    params = params or SMOOTHING
    return {"filter": "one-euro (Casiez et al., CHI 2012)", "per": "track",
            "params": {k: asdict(v) for k, v in params.items()}}


def landmark_jitter(landmarks: np.ndarray) -> float:
    """Jitter of a landmark track: mean frame-to-frame displacement of the landmarks, in pixels.

    Meaningful on a segment where the face is (nearly) still, where all movement is noise.

    Args:
        landmarks: (T, K, 2|3) landmarks in pixels of consecutive frames of one face (x, y used).

    Returns:
        mean over frames and landmarks of ‖p_t − p_{t−1}‖₂ (x, y), px; NaN when T < 2.
    """
    lm = np.asarray(landmarks, np.float64)[..., :2]
    if len(lm) < 2:
        return float("nan")
    return float(np.linalg.norm(np.diff(lm, axis=0), axis=-1).mean())
