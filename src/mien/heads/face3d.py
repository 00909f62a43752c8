"""The ``face3d`` head of ``mien analyze --face3d``: a parametric 3-D face (:mod:`mien.models.face3d`) fitted
to each face's MediaPipe landmarks — pose, identity shape, expression, jaw and eyelid coefficients.

It takes no crop (``contract`` None) and has no network: the fit is regularised least squares
(:func:`mien.models.face3d.fit_landmarks`). It runs in :meth:`Face3DHead.finish`, per track, because a track
shares one identity: the shape is fitted jointly on up to :data:`SHAPE_FRAMES` frames of the track spread over
its length (``shared_shape=True``), then every frame's pose, expression, jaw and eyelids are fitted with that
shape held fixed. With ``smooth`` the per-frame coefficients and pose are One Euro-filtered over time per
track (:func:`mien.face.smoothing.one_euro`, parameters :data:`FACE3D_SMOOTHING`, recorded in
``meta["face3d"]["smoothing"]``) — the remedy for frame-to-frame jitter of the mesh on still faces.

Reconstruct a row's mesh in image pixels::

    X = model.vertices(shape[None], expression[None], jaw[None], eyelids[None])[0]    # (V, 3) model units
    px = scale * X @ rotation.T + translation                                         # x, y px; z depth px
"""

from __future__ import annotations

import numpy as np

from mien.face.smoothing import OneEuroParams, one_euro, smoothing_meta
from mien.heads.base import Head, file_info
from mien.results.result import ColumnSpec

SHAPE_FRAMES = 128
"""Most frames per track used to fit its shared identity (evenly spaced over the track)."""
CHUNK = 512
"""Frames per fixed-shape fit call (bounds memory on long tracks)."""

FACE3D_SMOOTHING = {
    "coefficients": OneEuroParams(min_cutoff=2.0, beta=1.0),  # expression/eyelids in model units, jaw in rad
    "pose": OneEuroParams(min_cutoff=2.0, beta=0.5),          # rotation entries, log scale, translation / scale
}
"""One Euro parameters of ``--face3d-smooth`` (``beta`` per unit/s of each group's values). The pose group
filters the rotation matrix entries (re-orthonormalised afterwards), the log scale and the translation in
units of the face scale (so ``beta`` does not depend on the image size).

Chosen on three clips used to build mien-face (``face_1``, ``Input__00002``, ``driving_d3``) from a grid of
min_cutoff × pose beta by landmark error against dlib's 68 points (lag) and mesh jitter on still segments: the
earlier (1 Hz, 0.05) lagged on moving heads (NME 6.75 % vs 4.98 % unsmoothed, jitter 0.339 px vs 0.481 px);
(2 Hz, 0.5) is better on both (5.47 %, 0.329 px). On the held-out clips (``mien evaluate face3d``) it trades
NME 4.30 → 4.79 % for jitter 0.748 → 0.507 px."""

COEFFICIENTS = ("face3d_expression", "face3d_jaw", "face3d_eyelids")


def _orthonormalise(R: np.ndarray) -> np.ndarray:
    """Nearest rotations (SVD) of (N, 3, 3) matrices."""
    U, _, Vt = np.linalg.svd(R)
    d = np.sign(np.linalg.det(U @ Vt))
    U[:, :, -1] *= d[:, None]
    return U @ Vt


class Face3DHead(Head):
    """Parametric 3-D face fit per track (see the module docstring).

    Args:
        model: face-model spec (:func:`mien.models.face3d.spec.open_face_model`: None = the shipped
            ``mien-face``, a ``.npz`` path, or ``flame:/path/generic_model.pkl[,embedding.npz]``).
        smooth: One Euro-filter coefficients and pose per track.
        iterations: Gauss–Newton steps per fit.

    Raises:
        InputError: the model file is missing or invalid.
    """

    name = "face3d"
    contract = None
    backend = "numpy"

    def __init__(self, model: str | None = None, smooth: bool = False, iterations: int = 4):
        from mien.models.face3d.spec import open_face_model

        self.model, self.files = open_face_model(model)
        self.smooth = smooth
        self.iterations = iterations
        self.unit = self.model.units

    def columns(self) -> list[ColumnSpec]:
        S, E, u = self.model.n_shape, self.model.n_expression, self.unit
        m = self.model.name
        return [
            ColumnSpec("face3d_shape", "float32", (S,), u, f"{m} identity coefficients, one value per track "
                       "(fitted jointly on the track's frames); mien-face: length of each orthonormal basis "
                       "displacement, model units"),
            ColumnSpec("face3d_expression", "float32", (E,), u, f"{m} expression coefficients per frame "
                       "(mien-face: orthonormal basis, model units; FLAME: unit-variance)"),
            ColumnSpec("face3d_jaw", "float32", (3,), "rad", "jaw axis-angle in the model frame; [0] > 0 opens "
                       "the mouth"),
            ColumnSpec("face3d_eyelids", "float32", (2,), "", "eyelid closure (subject's left, right): 0 = the "
                       "mean shape's opening, 1 = closed"),
            ColumnSpec("face3d_rotation", "float32", (3, 3), "", "rotation model frame → camera axes (x right, y "
                       "down, z away); image point = scale · R · X + translation"),
            ColumnSpec("face3d_scale", "float32", (), f"px/{u}", "image pixels per model unit (scaled-"
                       "orthographic camera)"),
            ColumnSpec("face3d_translation", "float32", (3,), "px", "translation: x, y source pixels, z depth "
                       "offset on MediaPipe's pixel-scale z"),
            ColumnSpec("face3d_residual", "float32", (), "px", "RMS image-plane distance of the fitted model's "
                       "landmarks to MediaPipe's (the 468 mesh points the model embeds; of the unsmoothed fit)"),
        ]

    def __call__(self, crops, landmarks, **inputs) -> dict[str, np.ndarray]:
        """No per-batch output: the fit runs per track in :meth:`finish`."""
        return {}

    def fit_track(self, landmarks: np.ndarray) -> dict[str, np.ndarray]:
        """Fit one track: shared shape on up to :data:`SHAPE_FRAMES` frames, the rest per frame.

        Args:
            landmarks: (T, 478, 3) MediaPipe landmarks of one face in time order, px.

        Returns:
            the :meth:`columns` values of the T rows (float32, unsmoothed).
        """
        from mien.models.face3d import fit_landmarks

        lm = np.asarray(landmarks, np.float64)
        pick = np.unique(np.linspace(0, len(lm) - 1, min(len(lm), SHAPE_FRAMES)).round().astype(int))
        shape = fit_landmarks(lm[pick], self.model, shared_shape=True, iterations=self.iterations)["shape"][0]
        parts = [fit_landmarks(lm[i:i + CHUNK], self.model, shape=shape, iterations=self.iterations)
                 for i in range(0, len(lm), CHUNK)]
        fit = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        out = {"face3d_shape": np.broadcast_to(shape, (len(lm), len(shape))), "face3d_expression": fit["expression"],
               "face3d_jaw": fit["jaw"], "face3d_eyelids": fit["eyelids"], "face3d_rotation": fit["rotation"],
               "face3d_scale": fit["scale"], "face3d_translation": fit["translation"],
               "face3d_residual": fit["residual"]}
        return {k: np.ascontiguousarray(v, np.float32) for k, v in out.items()}

    def finish(self, columns: dict[str, np.ndarray], face_id: np.ndarray) -> dict[str, np.ndarray]:
        """Fit every track (rows sorted by frame within a track), then smooth if asked."""
        n = len(face_id)
        out = {c.name: np.zeros((n, *c.shape), np.float32) for c in self.columns()}
        for fid in np.unique(face_id):
            m = np.nonzero(face_id == fid)[0]
            for k, v in self.fit_track(columns["landmarks"][m]).items():
                out[k][m] = v
            if self.smooth and len(m) > 1:
                smooth_fit(out, m, columns["t_sec"][m])
        return out

    def model_info(self) -> dict:
        return file_info(self.model.name, *self.files)

    def meta(self) -> dict:
        info = {"model": self.model.name, "units": self.unit, "n_shape": self.model.n_shape,
                "n_expression": self.model.n_expression, "n_vertices": self.model.n_vertices,
                "fit": {"method": "regularised Gauss-Newton on MediaPipe landmarks, shared shape per track",
                        "iterations": self.iterations, "shape_frames": SHAPE_FRAMES}}
        if self.smooth:
            info["smoothing"] = smoothing_meta(FACE3D_SMOOTHING)
        return {"face3d": info}


def smooth_fit(cols: dict[str, np.ndarray], rows: np.ndarray, t_sec: np.ndarray,
               params: dict[str, OneEuroParams] | None = None) -> None:
    """One Euro-filter the face3d coefficients and pose of one track's rows, in place.

    Args:
        cols: the face3d columns (N rows). rows: (T,) indices of the track's rows in time order.
        t_sec: (T,) strictly increasing times, s. params: per group (default :data:`FACE3D_SMOOTHING`).
    """
    p = params or FACE3D_SMOOTHING
    for k in COEFFICIENTS:
        cols[k][rows] = one_euro(cols[k][rows], t_sec, p["coefficients"])
    scale = cols["face3d_scale"][rows].astype(np.float64)
    rot = one_euro(cols["face3d_rotation"][rows].astype(np.float64), t_sec, p["pose"])
    log_s = one_euro(np.log(scale), t_sec, p["pose"])
    tr = one_euro(cols["face3d_translation"][rows] / scale[:, None], t_sec, p["pose"])
    cols["face3d_rotation"][rows] = _orthonormalise(rot)
    cols["face3d_scale"][rows] = np.exp(log_s)
    cols["face3d_translation"][rows] = tr * np.exp(log_s)[:, None]
