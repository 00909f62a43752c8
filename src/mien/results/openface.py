"""OpenFace 2.x CSV interoperability (``FeatureExtraction`` output format).

Conventions (OpenFace wiki, "Output Format"): ``frame`` is 1-based; ``timestamp`` in seconds; gaze vectors
``gaze_0_*`` (the eye leftmost in the image = subject's right eye) and ``gaze_1_*`` are unit vectors in the
camera frame; ``gaze_angle_x = atan2(g_x, -g_z)``, ``gaze_angle_y = atan2(g_y, -g_z)`` in radians of the
mean gaze vector; ``pose_T*`` in millimetres; ``pose_Rx, pose_Ry, pose_Rz`` in radians with
``R = Rx·Ry·Rz`` (pitch, yaw, roll); ``x_i, y_i`` the 68 iBUG landmarks in pixels.
"""

from __future__ import annotations

import os
import re

import numpy as np

from mien.errors import InputError
from mien.face.landmarks import IBUG68
from mien.io.atomic import atomic_output
from mien.results.result import AnalysisResult

_AU_COL = re.compile(r"^AU\d\d_[rc]$")


def _angles_to_vectors(yaw_deg: np.ndarray, pitch_deg: np.ndarray) -> np.ndarray:
    """mien gaze angles (N,) in degrees (+ yaw toward the image's left, + pitch down) → camera-frame unit
    vectors (N, 3) pointing from the eye (-z = toward the camera); a NaN angle gives a NaN vector."""
    v = np.stack([-np.tan(np.radians(yaw_deg)), np.tan(np.radians(pitch_deg)), -np.ones_like(yaw_deg)], -1)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _vectors_to_angles(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.degrees(np.arctan2(-v[:, 0], -v[:, 2])), np.degrees(np.arctan2(v[:, 1], -v[:, 2]))


def write_openface(result: AnalysisResult, path: str | os.PathLike) -> None:
    """Write an OpenFace 2.x style CSV with the columns mien has, atomically.

    Columns: frame, face_id, timestamp, confidence, success, gaze_0_x…gaze_1_z, gaze_angle_x, gaze_angle_y,
    pose_Tx…pose_Tz, pose_Rx…pose_Rz, x_0…x_67, y_0…y_67 (MediaPipe mesh vertices nearest the iBUG-68
    points, see :data:`mien.face.landmarks.IBUG68`), then any extra columns named ``AUxx_r`` / ``AUxx_c``,
    and ``AUxx_c`` (0/1 at the model's thresholds) for every AU probability column of ``--au``/``--au-model``,
    ``AUxx_r`` (0–5) for every ``AUxx_intensity`` column of an ``--au-model`` with an intensity head.
    Separator ", " as OpenFace writes it. NaN values (gaze while the eyes are closed, a missing AU) are
    written as empty fields; :func:`read_openface` reads them back as NaN.
    """
    import pandas as pd

    r = result
    lm = r.landmarks if r.n_landmarks == 68 else r.landmarks[:, IBUG68]
    g0 = _angles_to_vectors(r.gaze_right_yaw_deg, r.gaze_right_pitch_deg)  # leftmost eye in the image
    g1 = _angles_to_vectors(r.gaze_left_yaw_deg, r.gaze_left_pitch_deg)
    cols: dict[str, np.ndarray] = {
        "frame": r.frame + 1, "face_id": r.face_id, "timestamp": r.t_sec, "confidence": r.confidence,
        "success": np.ones(len(r), np.int64),
    }
    for k, g in (("0", g0), ("1", g1)):
        for i, ax in enumerate("xyz"):
            cols[f"gaze_{k}_{ax}"] = g[:, i]
    cols["gaze_angle_x"] = -np.radians(r.gaze_yaw_deg.astype(np.float64))
    cols["gaze_angle_y"] = np.radians(r.gaze_pitch_deg.astype(np.float64))
    cols["pose_Tx"], cols["pose_Ty"], cols["pose_Tz"] = r.tx_mm, r.ty_mm, r.tz_mm
    cols["pose_Rx"] = np.radians(r.pitch_deg.astype(np.float64))
    cols["pose_Ry"] = np.radians(r.yaw_deg.astype(np.float64))
    cols["pose_Rz"] = np.radians(r.roll_deg.astype(np.float64))
    for i in range(lm.shape[1]):
        cols[f"x_{i}"] = lm[:, i, 0]
    for i in range(lm.shape[1]):
        cols[f"y_{i}"] = lm[:, i, 1]
    for name, arr in r.extra.items():
        if _AU_COL.match(name):
            cols[name] = arr
    au = r.meta.get("au", {})
    for name, thr in zip(au.get("names", []), au.get("thresholds", []), strict=False):
        if name in r.extra and f"{name}_c" not in cols:  # mien AU probabilities -> OpenFace presence 0/1
            cols[f"{name}_c"] = (r.extra[name] >= thr).astype(np.int64)
        if f"{name}_intensity" in r.extra and f"{name}_r" not in cols:  # FACS 0-5, OpenFace's AUxx_r scale
            cols[f"{name}_r"] = r.extra[f"{name}_intensity"]
    df = pd.DataFrame(cols)
    with atomic_output(path) as tmp, open(tmp, "w", newline="") as f:
        f.write(", ".join(df.columns) + "\n")
        df.to_csv(f, header=False, index=False, lineterminator="\n", sep=",", float_format="%.9g")


def read_openface(path: str | os.PathLike) -> AnalysisResult:
    """Load an OpenFace 2.x CSV (``FeatureExtraction`` / ``FaceLandmarkVidMulti`` output).

    Rows with ``success == 0`` (no face) are dropped, as mien has no row for a frame without a face.
    Missing columns (``face_id`` in single-face output, ``gaze_angle_*`` in older versions) are derived or
    defaulted: face_id 0, gaze angles from the mean gaze vector. Converted to mien's conventions: 0-based
    frame, degrees, per-eye gaze angles; landmarks (N, 68, 3) with z = NaN (OpenFace's 2-D points); eye and
    mouth openness from the 68 points are not computed (NaN). ``AUxx_r`` / ``AUxx_c`` columns are kept as
    extra columns.

    Raises:
        InputError: missing file or not an OpenFace CSV (no ``frame``/``pose_Rx``/``x_0`` columns).
    """
    import pandas as pd

    if not os.path.exists(path):
        raise InputError(path, "no such file")
    try:
        df = pd.read_csv(path, skipinitialspace=True)
    except Exception as e:
        raise InputError(path, f"not a CSV file ({str(e).splitlines()[0][:120]})") from None
    df.columns = [c.strip() for c in df.columns]
    need = {"frame", "timestamp", "pose_Rx", "pose_Ry", "pose_Rz", "x_0", "y_0"}
    if not need <= set(df.columns):
        raise InputError(path, f"not an OpenFace CSV (missing columns {sorted(need - set(df.columns))})")
    n_total = len(df)
    if "success" in df.columns:
        df = df[df["success"].astype(int) == 1].reset_index(drop=True)
    n = len(df)
    k = sum(1 for c in df.columns if re.fullmatch(r"x_\d+", c))
    lm = np.full((n, k, 3), np.nan, np.float32)
    lm[:, :, 0] = df[[f"x_{i}" for i in range(k)]].to_numpy(np.float32)
    lm[:, :, 1] = df[[f"y_{i}" for i in range(k)]].to_numpy(np.float32)
    f64 = lambda c: df[c].to_numpy(np.float64)  # noqa: E731

    cols: dict[str, np.ndarray] = {
        "frame": df["frame"].to_numpy(np.int64) - 1,
        "t_sec": f64("timestamp"),
        "face_id": df["face_id"].to_numpy(np.int32) if "face_id" in df else np.zeros(n, np.int32),
        "confidence": df["confidence"].to_numpy(np.float32) if "confidence" in df else np.ones(n, np.float32),
        "bbox": np.concatenate([lm[:, :, :2].min(1), lm[:, :, :2].max(1)], 1),
        "landmarks": lm,
        "pitch_deg": np.degrees(f64("pose_Rx")), "yaw_deg": np.degrees(f64("pose_Ry")),
        "roll_deg": np.degrees(f64("pose_Rz")),
    }
    for ax in "xyz":
        if f"pose_T{ax}" in df:
            cols[f"t{ax}_mm"] = f64(f"pose_T{ax}")
    if {"gaze_0_x", "gaze_1_z"} <= set(df.columns):
        g0 = df[["gaze_0_x", "gaze_0_y", "gaze_0_z"]].to_numpy(np.float64)
        g1 = df[["gaze_1_x", "gaze_1_y", "gaze_1_z"]].to_numpy(np.float64)
        cols["gaze_right_yaw_deg"], cols["gaze_right_pitch_deg"] = _vectors_to_angles(g0)
        cols["gaze_left_yaw_deg"], cols["gaze_left_pitch_deg"] = _vectors_to_angles(g1)
        if "gaze_angle_x" not in df:
            mean = (g0 + g1) / 2
            cols["gaze_yaw_deg"], cols["gaze_pitch_deg"] = _vectors_to_angles(mean)
    if "gaze_angle_x" in df:
        cols["gaze_yaw_deg"] = -np.degrees(f64("gaze_angle_x"))
        cols["gaze_pitch_deg"] = np.degrees(f64("gaze_angle_y"))
    if "AU45_c" in df:
        cols["blink"] = df["AU45_c"].to_numpy() > 0.5
    extra_meta = {}
    for c in df.columns:
        if _AU_COL.match(c):
            cols[c] = df[c].to_numpy(np.float32)
            extra_meta[c] = {"unit": "", "description": "OpenFace AU intensity 0-5" if c.endswith("_r")
                             else "OpenFace AU presence 0/1"}
    meta = {"source": os.fspath(path), "format": "openface", "landmark_scheme": "ibug68" if k == 68 else f"k{k}",
            "frames_processed": int(n_total), "extra_columns": extra_meta}
    return AnalysisResult.from_columns(cols, meta=meta, n_landmarks=k)
