"""Per-frame fit of a face model to MediaPipe landmarks (no learning) and its landmark-error evaluation.

:func:`fit_landmarks` alternates (a) a similarity pose — Umeyama on 3-D landmarks, a scaled-orthographic
camera from an affine fit on 2-D ones — with (b) Gauss–Newton steps on the coefficients (shape, expression,
jaw, eyelids) under a Gaussian prior (ridge): ``Σ w_k ‖r_k‖² / σ_noise² + Σ_p (θ_p / σ_p)²``, residuals in
model units. For ``mien-face`` every coefficient is linear except the jaw, so a couple of steps converge.
Jacobians are forward differences of :meth:`FaceModel.vertices`, so any :class:`FaceModel` (FLAME too) fits.
"""

from __future__ import annotations

import numpy as np
import torch

from mien.face import landmarks as L
from mien.models.face3d._align import umeyama
from mien.models.face3d.base import N_MEDIAPIPE, FaceModel

JAW_STD_RAD = 0.2
EYELID_STD = 0.5


def _camera_2d(src: np.ndarray, dst: np.ndarray, w: np.ndarray):
    """Scaled-orthographic camera from an affine fit: dst (B, K, 2) ≈ s · R[:2] · src (B, K, 3) + t."""
    ws = w / w.sum()
    mu_s = np.einsum("k,bkd->bd", ws, src)
    mu_d = np.einsum("k,bkd->bd", ws, dst)
    xs, xd = (src - mu_s[:, None]) * np.sqrt(ws)[None, :, None], (dst - mu_d[:, None]) * np.sqrt(ws)[None, :, None]
    A = np.linalg.solve(np.einsum("bki,bkj->bij", xs, xs) + 1e-9 * np.eye(3), np.einsum("bki,bkj->bij", xs, xd))
    U, S, Vt = np.linalg.svd(np.swapaxes(A, 1, 2), full_matrices=False)  # (B, 2, 3) = U S Vt
    r12 = U @ Vt
    R = np.concatenate([r12, np.cross(r12[:, 0], r12[:, 1])[:, None]], 1)
    s = S.mean(1)
    t = mu_d - s[:, None] * np.einsum("bij,bj->bi", r12, mu_s)
    return s, R, np.concatenate([t, np.zeros((len(t), 1))], 1)


def _model_landmarks(model: FaceModel, theta: torch.Tensor, sizes: tuple[int, int]) -> torch.Tensor:
    S, E = sizes
    v = model.vertices(theta[:, :S], theta[:, S:S + E], theta[:, S + E:S + E + 3], theta[:, S + E + 3:])
    return model.landmarks(v)


def fit_landmarks(landmarks, model: FaceModel, *, weights: np.ndarray | None = None, iterations: int = 3,
                  n_shape: int | None = None, n_expression: int | None = None, shared_shape: bool = False,
                  noise_cm: float = 0.1, prior_scale: float = 1.0, chunk: int = 64) -> dict[str, np.ndarray]:
    """Fit pose and coefficients of ``model`` to MediaPipe landmarks, per frame.

    Args:
        landmarks: (B, 478, 3) — x, y source pixels, z MediaPipe's pixel-scale depth (smaller = closer), as in
            :class:`~mien.AnalysisResult` ``landmarks`` — or (B, 478, 2) pixels (scaled-orthographic camera).
        model: a :class:`FaceModel` (``load_face_model()``, ``load_flame(...)``); landmarks it does not embed
            are ignored.
        weights: (478,) per-landmark weights (None: 1 for the 468 mesh points, 0 for the 10 iris points,
            whose gaze the models do not represent).
        iterations: pose/coefficient alternations.
        n_shape, n_expression: fit only the first components (None: all of the model's).
        shared_shape: one identity for the whole batch (frames of one person), per-frame everything else.
        noise_cm: landmark noise σ in model units of cm (converted for models in metres).
        prior_scale: multiplies the prior σ of every coefficient (larger = weaker regularisation).
        chunk: frames per Jacobian evaluation (memory ~ chunk × P × 3V floats).

    Returns:
        dict of numpy arrays: ``rotation`` (B, 3, 3) model → camera axes; ``scale`` (B,) px per model unit;
        ``translation`` (B, 3) px (z = 0 for 2-D input), so that image point ≈ scale·R·X + t; ``shape`` (B, S),
        ``expression`` (B, E), ``jaw`` (B, 3) rad, ``eyelids`` (B, 2); ``landmarks`` (B, 478, 3) fitted points in
        the input's frame (NaN where not embedded); ``residual`` (B,) weighted RMS image-plane error in px.

    Raises:
        ValueError: landmarks not (B, 478, 2|3), non-finite values, or bad weights.
    """
    y = np.asarray(landmarks, np.float64)
    if y.ndim != 3 or y.shape[1] != N_MEDIAPIPE or y.shape[2] not in (2, 3):
        raise ValueError(f"landmarks must be (B, {N_MEDIAPIPE}, 2|3) MediaPipe points, got {y.shape}")
    if not np.isfinite(y).all():
        raise ValueError("landmarks contain NaN or inf")
    b, _, d = y.shape
    w_all = np.ones(N_MEDIAPIPE)
    w_all[468:] = 0.0
    if weights is not None:
        w_all = np.asarray(weights, np.float64)
        if w_all.shape != (N_MEDIAPIPE,) or (w_all < 0).any():
            raise ValueError(f"weights must be (478,) non-negative, got shape {w_all.shape}")
    ids = model.embedding.landmark_ids
    y = y[:, ids]
    w = w_all[ids]
    S = model.n_shape if n_shape is None else min(n_shape, model.n_shape)
    E = model.n_expression if n_expression is None else min(n_expression, model.n_expression)
    P = S + E + 5
    unit = 100.0 if model.units == "m" else 1.0  # cm per model unit
    sig_n = noise_cm / unit
    std = lambda k: np.asarray(getattr(model, k, None) if getattr(model, k, None) is not None else [])  # noqa: E731
    s_std = std("shape_std")[:S] if len(std("shape_std")) else np.ones(S)
    e_std = std("expression_std")[:E] if len(std("expression_std")) else np.ones(E)
    prior = np.concatenate([s_std, e_std, np.full(3, JAW_STD_RAD), np.full(2, EYELID_STD)]) * prior_scale
    lam = 1.0 / np.maximum(prior, 1e-8) ** 2
    theta = np.zeros((b, P))
    dd = d
    for _ in range(iterations):
        with torch.no_grad():
            m = _model_landmarks(model, torch.as_tensor(theta), (S, E)).numpy()
        if d == 3:
            s, R, t = umeyama(m, y, w)
        else:
            s, R, t = _camera_2d(m, y, w)
        # Residual in model units: observations brought back by the inverse similarity (image-plane rows).
        target = (y - t[:, None, :dd]) / s[:, None, None]  # ≈ R[:D] · X(θ)
        theta = _gauss_newton(model, theta, target, R[:, :dd], w, lam, sig_n, (S, E), shared_shape, chunk)
    with torch.no_grad():
        m = _model_landmarks(model, torch.as_tensor(theta), (S, E)).numpy()
    fitted = s[:, None, None] * np.einsum("bij,bkj->bki", R, m) + t[:, None]
    err = np.linalg.norm(fitted[..., :2] - y[..., :2], axis=-1)
    residual = np.sqrt((w * err ** 2).sum(1) / max(w.sum(), 1e-12))
    full = np.full((b, N_MEDIAPIPE, 3), np.nan)
    full[:, ids] = fitted
    return {"rotation": R, "scale": s, "translation": t, "shape": theta[:, :S], "expression": theta[:, S:S + E],
            "jaw": theta[:, S + E:S + E + 3], "eyelids": theta[:, S + E + 3:], "landmarks": full,
            "residual": residual}


def _gauss_newton(model, theta, target, Rp, w, lam, sig_n, sizes, shared, chunk, steps: int = 2):
    """Gauss–Newton steps on θ with target (B, K, D) = projected model-frame points (R[:D] · X)."""
    b, P = theta.shape
    S = sizes[0]
    eps = 1e-4
    for _ in range(steps):
        H = np.empty((b, P, P))
        g = np.empty((b, P))
        for i in range(0, b, chunk):
            th = theta[i:i + chunk]
            n = len(th)
            if hasattr(model, "jacobian"):
                m0, J = model.jacobian(th, *sizes)
            else:
                pert = np.concatenate([th, (th[:, None, :] + eps * np.eye(P)[None]).reshape(-1, P)])
                with torch.no_grad():
                    out = _model_landmarks(model, torch.as_tensor(pert), sizes).numpy()
                m0 = out[:n]
                J = (out[n:].reshape(n, P, *m0.shape[1:]) - m0[:, None]) / eps  # (n, P, K, 3)
            Rc = Rp[i:i + n]
            Jp = (J.reshape(n, -1, 3) @ np.swapaxes(Rc, 1, 2)).reshape(n, P, -1)  # (n, P, K·D): R[:D]·∂X/∂θ
            r = (target[i:i + n] - m0 @ np.swapaxes(Rc, 1, 2)).reshape(n, -1)
            Jw = Jp * np.repeat(w, Rc.shape[1])[None, None]
            H[i:i + n] = Jw @ np.swapaxes(Jp, 1, 2) / sig_n ** 2
            g[i:i + n] = (Jw @ r[..., None])[..., 0] / sig_n ** 2 - lam * th
        H = H + np.diag(lam)[None]
        if not shared:
            theta = theta + np.linalg.solve(H, g[..., None])[..., 0]
            continue
        # One shape for the batch: eliminate per-frame parameters (Schur complement).
        Hss, Hse, Hee = H[:, :S, :S], H[:, :S, S:], H[:, S:, S:]
        lam_s = np.diag(lam[:S])
        # the prior on shape is counted once, not per frame
        Hss = Hss - (b - 1) / b * lam_s[None]
        gs = g[:, :S] + (b - 1) / b * lam[:S] * theta[:, :S]
        inv_ee_es = np.linalg.solve(Hee, np.swapaxes(Hse, 1, 2))
        inv_ee_ge = np.linalg.solve(Hee, g[:, S:, None])[..., 0]
        A = (Hss - Hse @ inv_ee_es).sum(0)
        rhs = (gs - np.einsum("bse,be->bs", Hse, inv_ee_ge)).sum(0)
        ds = np.linalg.solve(A, rhs)
        de = inv_ee_ge - np.einsum("bes,s->be", inv_ee_es, ds)
        theta = theta + np.concatenate([np.broadcast_to(ds, (b, S)), de], 1)
    return theta


def landmark_error(fitted: np.ndarray, reference_68: np.ndarray, *, jaw_contour: bool = True) -> dict[str, np.ndarray]:
    """Landmark error of fitted MediaPipe points against a 68-point (iBUG: dlib, OpenFace, FAN) detector.

    The fitted mesh is mapped to the 68 scheme by the nearest MediaPipe vertices
    (:data:`mien.face.landmarks.IBUG68`); the error is normalised by the reference's inter-ocular distance
    (outer eye corners, points 36 and 45), as in 300-W.

    Args:
        fitted: (B, 478, ≥2) fitted landmarks, px (``fit_landmarks(...)["landmarks"]``).
        reference_68: (B, 68, 2) px from an independent detector.
        jaw_contour: include the 17 jaw-contour points (dlib's contour runs lower than MediaPipe's face
            oval on turned faces; False gives the 51 inner points).

    Returns:
        dict: ``px`` (B,) mean point error in px, ``nme`` (B,) = px / inter-ocular distance, ``iod`` (B,) px.

    Raises:
        ValueError: wrong shapes.
    """
    f = np.asarray(fitted, np.float64)
    r = np.asarray(reference_68, np.float64)
    if f.ndim != 3 or f.shape[1] != N_MEDIAPIPE or r.shape != (len(f), 68, r.shape[-1]) or r.shape[-1] < 2:
        raise ValueError(f"need fitted (B, 478, ≥2) and reference (B, 68, 2), got {f.shape} and {r.shape}")
    pts = f[:, L.IBUG68, :2]
    keep = np.arange(68) if jaw_contour else np.arange(17, 68)
    err = np.linalg.norm(pts[:, keep] - r[:, keep, :2], axis=-1).mean(1)
    iod = np.linalg.norm(r[:, 36, :2] - r[:, 45, :2], axis=-1)
    return {"px": err, "nme": err / np.maximum(iod, 1e-9), "iod": iod}
