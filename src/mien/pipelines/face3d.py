"""3-D face pipelines: fitted meshes of an analysis, the ``mien render face3d`` video, mesh-sequence export
and the jitter figure.

``mien render face3d VIDEO -o OUT.mp4`` writes, for every processed frame, ``[input | shaded mesh | mesh
overlay]`` side by side (each panel the input frame, scaled to ``height``); the meshes come from the
:class:`~mien.heads.face3d.Face3DHead` fit of the landmarks of a first pass (:func:`mien.analyze`, or an
earlier ``mien analyze`` Parquet file), the frames are decoded again and streamed to the writer (one frame in
memory). With ``encoder`` (a ``mien export face3d`` folder) a fourth panel shows each face replaced by the
neural renderer's reconstruction of its crop from the learned encoder's parameters.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from mien.errors import InputError

if TYPE_CHECKING:
    from mien.io.video import Frame
    from mien.pipelines.analyze import Step

STILL_SPEED = 0.1
"""Still-segment threshold: face speed below this many inter-ocular distances per second (of the
low-passed landmarks, so jitter itself does not count as motion)."""
STILL_WINDOW_S = 0.5
"""Length (s) of the moving average that low-passes the landmarks for the still-segment test."""


@dataclass
class Face3DFit:
    """Fitted meshes of the rows of an analysis.

    Attributes:
        columns: the face3d columns (:meth:`mien.heads.face3d.Face3DHead.columns`), N rows.
        frame, face_id: (N,) per row; t_sec: (N,) s.
        vertices: (N, V, 3) float32 in the model frame and units (no head pose).
        posed: (N, V, 3) float32 image pixels x, y and depth z (larger = farther).
        triangles: (F, 3) int64. model: the :class:`~mien.models.face3d.FaceModel`. meta: the head's meta.
    """

    columns: dict
    frame: np.ndarray
    face_id: np.ndarray
    t_sec: np.ndarray
    vertices: np.ndarray
    posed: np.ndarray
    triangles: np.ndarray
    model: object
    meta: dict = field(default_factory=dict)


def fit_result(result, model: str | None = None, *, smooth: bool = False, head=None) -> Face3DFit:
    """Fit (or read) the face3d columns of an analysis and build its meshes.

    Args:
        result: :class:`~mien.AnalysisResult` (its ``landmarks``; face3d columns already in it are refitted).
        model: face-model spec (:func:`mien.models.face3d.spec.open_face_model`). smooth: One Euro smoothing.
        head: a ready :class:`~mien.heads.face3d.Face3DHead` (then ``model``/``smooth`` are ignored).

    Raises:
        InputError: bad model file.
    """
    from mien.heads.face3d import Face3DHead

    head = head or Face3DHead(model, smooth=smooth)
    cols = result.columns()
    order = np.lexsort((cols["face_id"], cols["frame"]))
    cols = {k: v[order] for k, v in cols.items()}
    fit = head.finish(cols, cols["face_id"]) if len(order) else {
        c.name: np.zeros((0, *c.shape), np.float32) for c in head.columns()}
    return _meshes(fit, cols["frame"], cols["face_id"], cols["t_sec"], head.model, head.meta()["face3d"])


def _meshes(fit, frame, face_id, t_sec, model, meta) -> Face3DFit:
    m = model
    if len(frame):
        v = np.concatenate([m.vertices(fit["face3d_shape"][i:i + 256], fit["face3d_expression"][i:i + 256],
                                       fit["face3d_jaw"][i:i + 256], fit["face3d_eyelids"][i:i + 256])
                            for i in range(0, len(frame), 256)])
    else:
        v = np.zeros((0, m.n_vertices, 3), np.float32)
    posed = (fit["face3d_scale"][:, None, None] * np.einsum("nij,nvj->nvi", fit["face3d_rotation"], v)
             + fit["face3d_translation"][:, None]).astype(np.float32)
    return Face3DFit(fit, frame, face_id, t_sec, v, posed, np.asarray(m.triangles, np.int64), m, meta)


def still_frames(landmarks: np.ndarray, t_sec: np.ndarray, *, speed: float = STILL_SPEED,
                 window_s: float = STILL_WINDOW_S) -> np.ndarray:
    """Which frames of one track belong to still segments (the face hardly moves).

    The landmarks are low-passed by a centred moving average of ``window_s``; a frame is still when the mean
    speed of the low-passed mesh points (468) is below ``speed`` inter-ocular distances per second, and so are
    its neighbours (a transition is not still).

    Args:
        landmarks: (T, 478, ≥2) px of one track in time order. t_sec: (T,) s.

    Returns:
        bool (T,); the frame-to-frame pairs (t−1, t) with both still are the ones :func:`mesh_jitter` uses.
    """
    lm = np.asarray(landmarks, np.float64)[:, :468, :2]
    t = np.asarray(t_sec, np.float64)
    T = len(lm)
    if T < 3:
        return np.zeros(T, bool)
    dt = float(np.median(np.diff(t))) or 1.0
    k = max(1, int(round(window_s / dt)) | 1)
    kernel = np.ones(k) / k
    flat = lm.reshape(T, -1)
    pad = np.pad(flat, ((k // 2, k // 2), (0, 0)), mode="edge")
    low = np.stack([np.convolve(pad[:, j], kernel, mode="valid") for j in range(flat.shape[1])], 1).reshape(lm.shape)
    iod = np.linalg.norm(lm[:, 33] - lm[:, 263], axis=-1).mean()
    v = np.linalg.norm(np.gradient(low, t, axis=0), axis=-1).mean(1) / max(iod, 1e-9)
    still = v < speed
    return still & np.roll(still, 1) & np.roll(still, -1)


def mesh_jitter(points: np.ndarray, still: np.ndarray) -> float:
    """Jitter: mean frame-to-frame displacement of the mesh points over consecutive still frames.

    Args:
        points: (T, V, 3) vertices of one track in time order (px for posed meshes, model units otherwise).
        still: (T,) bool from :func:`still_frames`.

    Returns:
        mean ‖p_t − p_{t−1}‖ over vertices and pairs with both frames still (points' units); NaN if none.
    """
    p = np.asarray(points, np.float64)
    s = np.asarray(still, bool)
    pairs = s[1:] & s[:-1]
    if not pairs.any():
        return float("nan")
    return float(frame_motion(p)[pairs].mean())


def frame_motion(points: np.ndarray) -> np.ndarray:
    """Mean displacement of the points between consecutive frames: (T, V, D) → (T − 1,) (points' units)."""
    p = np.asarray(points, np.float64)
    return np.linalg.norm(np.diff(p, axis=0), axis=-1).mean(1) if len(p) > 1 else np.zeros(0)


def jitter_report(fit: Face3DFit, landmarks: np.ndarray) -> dict:
    """Jitter of a :class:`Face3DFit` on still segments, pooled over tracks.

    Args:
        landmarks: (N, 478, 3) the fit's rows' landmarks (same row order).

    Returns:
        dict: ``posed_px`` (image-plane x, y of the posed mesh, px), ``shape_mm`` (unposed mesh, mm if the
        model is in cm/m), ``still_pairs`` (how many frame pairs were measured), ``landmarks_px`` (the same
        figure on MediaPipe's raw 468 points, for scale).
    """
    unit_mm = {"cm": 10.0, "m": 1000.0}.get(getattr(fit.model, "units", ""), 1.0)
    acc = {"posed_px": [], "shape_mm": [], "landmarks_px": []}
    pairs = 0
    for fid in np.unique(fit.face_id):
        m = np.nonzero(fit.face_id == fid)[0]
        still = still_frames(landmarks[m], fit.t_sec[m])
        n = int((still[1:] & still[:-1]).sum())
        if n == 0:
            continue
        pairs += n
        acc["posed_px"].append((mesh_jitter(fit.posed[m][..., :2], still), n))
        acc["shape_mm"].append((mesh_jitter(fit.vertices[m] * unit_mm, still), n))
        acc["landmarks_px"].append((mesh_jitter(landmarks[m][:, :468, :2], still), n))
    out = {k: (float(sum(j * n for j, n in v) / sum(n for _, n in v)) if v else float("nan"))
           for k, v in acc.items()}
    out["still_pairs"] = pairs
    return out


@dataclass
class Face3DRenderReport:
    """What :func:`render_face3d` wrote.

    Attributes:
        output: the MP4 path. frames: frames written; faces: rows (faces) drawn.
        width, height: output size, px (3 panels side by side, 4 with an encoder). fps: frames/s. seconds: wall time.
        mesh_files: files written by ``export_mesh`` (the ``.npz`` first). meta: model and fit metadata.
    """

    output: str
    frames: int
    faces: int
    width: int
    height: int
    fps: float
    seconds: float = 0.0
    mesh_files: list = field(default_factory=list)
    meta: dict = field(default_factory=dict)


def render_face3d(video: str | os.PathLike, output: str | os.PathLike, *, model: str | None = None,
                  smooth: bool = False, start: float | None = None, end: float | None = None, every: int = 1,
                  max_faces: int = 1, height: int | None = None, analysis=None, export_mesh=None,
                  obj: bool = False, gltf: bool = False, alpha: float = 0.6, crf: int = 18,
                  encoder: str | os.PathLike | None = None,
                  on_frame: Callable[[Frame, Step], bool | None] | None = None) -> Face3DRenderReport:
    """Write ``[input | shaded mesh | mesh overlay (| neural reconstruction)]`` for every processed frame of a
    video.

    Args:
        video: input video file. output: .mp4 path (written atomically; parent folders created).
        model: face-model spec (:func:`mien.models.face3d.spec.open_face_model`). smooth: One Euro-smooth
            the coefficients and pose per track (``--face3d-smooth``).
        start, end: time window, s; every: frame stride; max_faces: faces per frame.
        height: panel height in px (default: the input's, at most 720); the width follows the aspect ratio.
        analysis: landmarks from an earlier ``mien analyze`` of this video (an :class:`~mien.AnalysisResult`
            or its Parquet path) instead of analysing it now.
        export_mesh: folder for the mesh sequence (:func:`mien.models.face3d.export.save_mesh_sequence`),
            None: none. obj: also one ``.obj`` per row there. gltf: also one ``.glb`` per track with morph
            targets (needs ``pygltflib``).
        alpha: opacity of the overlaid mesh. crf: x264 quality.
        encoder: a face3d export folder (``mien export face3d``): adds a fourth panel, the input frame with each
            face crop replaced by the neural renderer's reconstruction of it from the encoder's parameters
            (:class:`mien.pipelines.face3d_encoder.EncoderRunner`).
        on_frame: ``on_frame(frame, step)`` per analysed frame (``step``: :class:`~mien.pipelines.analyze.Step`
            "analysis"; none with ``analysis``) and per output frame once written ("render", with the input
            :class:`~mien.io.video.Frame`); True ends that pass at that frame (a stopped analysis renders only the
            frames it saw; the mesh sequence holds the frames rendered); an exception it raises propagates and
            leaves no output file (the mesh sequence is written after the video).

    Returns:
        :class:`Face3DRenderReport`.

    Raises:
        InputError: unreadable video, analysis or model file; no face found.
        ValueError: bad options.
    """
    from mien.io.atomic import atomic_output
    from mien.io.video import VideoSource
    from mien.io.writer import VideoWriter
    from mien.viz.mesh import draw_mesh

    t0 = time.perf_counter()
    if gltf:
        import importlib.util

        if importlib.util.find_spec("pygltflib") is None:
            raise ValueError("--gltf needs pygltflib (pip install pygltflib)")
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    if height is not None and height < 16:
        raise ValueError(f"height must be >= 16 px, got {height}")
    from mien.heads.face3d import Face3DHead

    head = Face3DHead(model, smooth=smooth)  # bad model files fail before the slow analysis
    neural = None
    if encoder is not None:
        from mien.pipelines.face3d_encoder import open_encoder

        neural = open_encoder(encoder)
    from mien.pipelines.analyze import Step, StepCallback

    n_pass = 2 if analysis is None else 1
    first = StepCallback(on_frame, Step("analysis", 0, n_pass))
    if analysis is None:
        from mien.pipelines.analyze import analyze

        analysis = analyze(video, start=start, end=end, every=every, max_faces=max_faces, identity=False,
                           on_frame=first if on_frame is not None else None)
    else:
        from mien.pipelines.tokens import resolve_analysis

        analysis = resolve_analysis(video, analysis)
    if len(analysis) == 0:
        raise InputError(str(video), "no face found in the processed frames")
    limit = first.limit
    step = StepCallback(on_frame, Step("render", n_pass - 1, n_pass))
    fit = fit_result(analysis, head=head)
    cols = analysis.columns()
    order = np.lexsort((cols["face_id"], cols["frame"]))
    boxes, lms = cols["bbox"][order], cols["landmarks"][order]
    rows: dict[int, list[int]] = {}
    for i, f in enumerate(fit.frame):
        rows.setdefault(int(f), []).append(i)
    src = VideoSource(video, start=start, end=end, every=every)
    fps = (src.info.fps or 25.0) / every
    frames = faces = pw = ph = 0
    last = -1
    with atomic_output(output) as tmp, VideoWriter(tmp, fps, crf=crf) as writer:
        for fr in src:
            if limit is not None and frames >= limit:
                break
            img = fr.image
            h0, w0 = img.shape[:2]
            ph = int(height or min(h0, 720))
            k = ph / h0
            pw = max(2, 2 * int(round(w0 * k / 2)))  # even: H.264 4:2:0
            if (pw, ph) != (w0, h0):
                img = cv2.resize(img, (pw, ph), interpolation=cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR)
            shaded = np.zeros_like(img)
            overlay = img.copy()
            recon = img.copy() if neural is not None else None
            for i in rows.get(fr.index, ()):
                pts = fit.posed[i].astype(np.float64) * k
                draw_mesh(shaded, pts, fit.triangles)
                draw_mesh(overlay, pts, fit.triangles, alpha=alpha)
                if neural is not None:
                    neural.paste_reconstruction(recon, fr.image, boxes[i], lms[i], k)
                faces += 1
            writer.write(np.concatenate([img, shaded, overlay] + ([recon] if recon is not None else []), axis=1))
            frames += 1
            last = fr.index
            if step(fr):
                break
    mesh_files = []
    if export_mesh is not None:  # after the video: a cancelled render leaves no files; a stopped one its frames
        from mien.models.face3d.export import save_mesh_sequence

        keep = fit.frame <= last if step.stopped else slice(None)
        c = {k: v[keep] for k, v in fit.columns.items()}
        mesh_files = save_mesh_sequence(export_mesh, fit.vertices[keep], fit.triangles, frame=fit.frame[keep],
                                        t_sec=fit.t_sec[keep], face_id=fit.face_id[keep],
                                        rotation=c["face3d_rotation"], scale=c["face3d_scale"],
                                        translation=c["face3d_translation"], units=fit.model.units, obj=obj, gltf=gltf,
                                        meta={"source": os.path.basename(str(video)), **fit.meta})
    return Face3DRenderReport(str(Path(output)), frames, faces, (3 + (neural is not None)) * pw, ph,
                              float(fps), time.perf_counter() - t0, [str(p) for p in mesh_files],
                              meta={"face3d": fit.meta, "frames_decoded": src.frames_decoded,
                                    "corrupt_frames": src.corrupt_frames})
