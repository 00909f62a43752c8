"""Overlay drawing: landmarks, face box, track id, head-pose axes, gaze rays and blink marker."""

from __future__ import annotations

import os

import cv2
import numpy as np

from mien.face import landmarks as L
from mien.face.geometry import camera_matrix, euler_to_rotation
from mien.io.atomic import atomic_output
from mien.io.video import open_source
from mien.io.writer import VideoWriter
from mien.results.result import AnalysisResult

_COLORS = [(0, 255, 0), (255, 128, 0), (0, 160, 255), (255, 0, 255), (255, 255, 0), (0, 255, 255)]


def draw_faces(image: np.ndarray, result: AnalysisResult, rows: np.ndarray) -> np.ndarray:
    """Draw the given rows of ``result`` on a copy of an RGB uint8 frame (H, W, 3) and return it.

    Draws the landmarks (dots), box, ``id N`` label, head-pose axes (x red, y green, z blue, 10 cm, from
    the head centre), gaze rays from each iris and a ``BLINK`` marker on blink frames.
    """
    out = image.copy()
    h, w = out.shape[:2]
    K = camera_matrix(w, h, result.meta.get("camera", {}).get("focal_px"))
    thick = max(1, round(max(h, w) / 400))
    for i in np.atleast_1d(rows):
        color = _COLORS[int(result.face_id[i]) % len(_COLORS)]
        lm = result.landmarks[i]
        xy = np.round(lm[:, :2]).astype(np.int32)
        ok = (xy[:, 0] >= 0) & (xy[:, 0] < w) & (xy[:, 1] >= 0) & (xy[:, 1] < h)
        out[xy[ok, 1], xy[ok, 0]] = (255, 255, 255)
        x0, y0, x1, y1 = np.round(result.bbox[i]).astype(int)
        cv2.rectangle(out, (x0, y0), (x1, y1), color, thick)
        cv2.putText(out, f"id {int(result.face_id[i])}", (x0, max(y0 - 6, 12)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.5 * thick, color, thick, cv2.LINE_AA)
        if np.isfinite(result.yaw_deg[i]):
            R = euler_to_rotation(*np.radians([result.pitch_deg[i], result.yaw_deg[i], result.roll_deg[i]]))
            t = np.array([result.tx_mm[i], result.ty_mm[i], result.tz_mm[i]], np.float64) / 10.0  # cm
            axes = np.array([[0, 0, 0], [10, 0, 0], [0, 10, 0], [0, 0, 10]], np.float64)
            cam = axes @ R.T + t
            if (cam[:, 2] > 1).all():
                uv = cam[:, :2] / cam[:, 2:] * K[0, 0] + K[:2, 2]
                o = tuple(np.round(uv[0]).astype(int))
                for k, c in zip(range(1, 4), [(255, 0, 0), (0, 255, 0), (0, 0, 255)], strict=True):
                    cv2.line(out, o, tuple(np.round(uv[k]).astype(int)), c, thick, cv2.LINE_AA)
        if lm.shape[0] == 478 and np.isfinite(result.gaze_left_yaw_deg[i]):
            eye_w = np.linalg.norm(lm[33, :2] - lm[133, :2])
            for iris, yaw, pitch in ((L.IRIS_LEFT_CENTER, result.gaze_left_yaw_deg[i], result.gaze_left_pitch_deg[i]),
                                     (L.IRIS_RIGHT_CENTER, result.gaze_right_yaw_deg[i],
                                      result.gaze_right_pitch_deg[i])):
                d = np.array([-np.tan(np.radians(yaw)), np.tan(np.radians(pitch))]) * 3 * eye_w
                p0 = lm[iris, :2]
                cv2.arrowedLine(out, tuple(np.round(p0).astype(int)), tuple(np.round(p0 + d).astype(int)),
                                (255, 255, 0), thick, cv2.LINE_AA, tipLength=0.2)
        if result.blink[i]:
            cv2.putText(out, "BLINK", (x0, min(y1 + 20 * thick, h - 4)), cv2.FONT_HERSHEY_SIMPLEX,
                        0.6 * thick, (255, 0, 0), thick + 1, cv2.LINE_AA)
    return out


def render_overlay(source: str | os.PathLike, result: AnalysisResult, out_path: str | os.PathLike) -> int:
    """Decode ``source`` again and write the overlay video of ``result`` to ``out_path`` atomically.

    The processed frames (``--every``, ``--start/--end`` as recorded in ``result.meta['options']``) are
    written at the source frame rate divided by ``every``. Returns the number of frames written.

    Raises:
        InputError: the source cannot be read.
    """
    opts = result.meta.get("options", {})
    every = int(opts.get("every", 1))
    src = open_source(source, start=opts.get("start"), end=opts.get("end"), every=every)
    fps = (src.info.fps or 25.0) / every
    # row indices per frame, computed once
    order = np.argsort(result.frame, kind="stable")
    frames_sorted = result.frame[order]
    with atomic_output(out_path) as tmp, VideoWriter(tmp, fps) as writer:
        for frame in src:
            lo, hi = np.searchsorted(frames_sorted, [frame.index, frame.index + 1])
            img = draw_faces(frame.image, result, order[lo:hi]) if hi > lo else frame.image
            writer.write(img)
        n = writer.frames_written
    return n
