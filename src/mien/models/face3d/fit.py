"""Per-frame fit of a face model to MediaPipe landmarks (no learning) and its landmark-error evaluation.

:func:`fit_landmarks` starts from a similarity pose of the mean shape — Umeyama on 3-D landmarks, a
scaled-orthographic camera from an affine fit on 2-D ones — then takes joint Gauss–Newton steps on the pose
(rotation, log scale, translation) and the coefficients (shape, expression, jaw, eyelids) under a Gaussian
prior on the coefficients (ridge): ``Σ w_k ‖r_k‖² / σ_noise² + Σ_p (θ_p / σ_p)²``, residuals in model units.
For ``mien-face`` every coefficient is linear except the jaw, so a few steps converge. ``mien-face`` gives
exact Jacobians (:meth:`MienFaceModel.jacobian`); for other models they are forward differences of
:meth:`FaceModel.vertices`, so any :class:`FaceModel` (FLAME too) fits.
"""

from __future__ import annotations

import numpy as np
import torch

from mien.face import landmarks as L
from mien.face.align import umeyama_batch
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


def _prior_std(model: FaceModel, key: str, n: int) -> np.ndarray:
    """The model's per-component std (mien-face), or 1 (FLAME's coefficients are unit-variance by design)."""
    std = getattr(model, key, None)
    return np.ones(n) if std is None else np.asarray(std, np.float64)[:n]


def _model_landmarks(model: FaceModel, theta: torch.Tensor, sizes: tuple[int, int]) -> torch.Tensor:
    S, E = sizes
    v = model.vertices(theta[:, :S], theta[:, S:S + E], theta[:, S + E:S + E + 3], theta[:, S + E + 3:])
    return model.landmarks(v)


def fit_landmarks(landmarks, model: FaceModel, *, weights: np.ndarray | None = None, iterations: int = 4,
                  n_shape: int | None = None, n_expression: int | None = None, shared_shape: bool = False,
                  noise_cm: float = 0.1, prior_scale: float = 1.0, chunk: int = 64,
                  shape: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Fit pose and coefficients of ``model`` to MediaPipe landmarks, per frame.

    Args:
        landmarks: (B, 478, 3) — x, y source pixels, z MediaPipe's pixel-scale depth (smaller = closer), as in
            :class:`~mien.AnalysisResult` ``landmarks`` — or (B, 478, 2) pixels (scaled-orthographic camera).
        model: a :class:`FaceModel` (``load_face_model()``, ``load_flame(...)``); landmarks it does not embed
            are ignored.
        weights: (478,) per-landmark weights (None: 1 for the 468 mesh points, 0 for the 10 iris points,
            whose gaze the models do not represent).
        iterations: joint Gauss–Newton steps on pose and coefficients after the initial similarity.
        n_shape, n_expression: fit only the first components (None: all of the model's).
        shared_shape: one identity for the whole batch (frames of one person), per-frame everything else.
        noise_cm: landmark noise σ in model units of cm (converted for models in metres).
        prior_scale: multiplies the prior σ of every coefficient (larger = weaker regularisation).
        chunk: frames per Jacobian evaluation (memory ~ chunk × P × 3V floats).
        shape: (S',) or (B, S') known identity coefficients, held fixed (not fitted; S = S', ``n_shape`` and
            ``shared_shape`` are then ignored) — e.g. a track's shared shape fitted on a subset of its frames.

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
    if len(ids) == 0:
        raise ValueError(f"face model {model.name!r} has no MediaPipe landmark embedding to fit")
    y = y[:, ids]
    w = w_all[ids]
    S = model.n_shape if n_shape is None else min(n_shape, model.n_shape)
    fixed = None
    if shape is not None:
        fixed = np.broadcast_to(np.asarray(shape, np.float64), (b, np.shape(shape)[-1]))
        if fixed.shape[1] > model.n_shape:
            raise ValueError(f"shape has {fixed.shape[1]} coefficients, the model {model.n_shape}")
        S, shared_shape = fixed.shape[1], False
    E = model.n_expression if n_expression is None else min(n_expression, model.n_expression)
    P = S + E + 5
    unit = 100.0 if model.units == "m" else 1.0  # cm per model unit
    sig_n = noise_cm / unit
    s_std = _prior_std(model, "shape_std", S)
    e_std = _prior_std(model, "expression_std", E)
    prior = np.concatenate([s_std, e_std, np.full(3, JAW_STD_RAD), np.full(2, EYELID_STD)]) * prior_scale
    lam = 1.0 / np.maximum(prior, 1e-8) ** 2
    theta = np.zeros((b, P))
    if fixed is not None:
        theta[:, :S] = fixed
    with torch.no_grad():
        m = _model_landmarks(model, torch.as_tensor(theta), (S, E)).numpy()
    s, R, t = umeyama_batch(m, y, weights=w) if d == 3 else _camera_2d(m, y, w)
    theta, s, R, t = _gauss_newton(model, theta, y, s, R, t, w, lam, sig_n, (S, E), shared_shape, chunk,
                                   iterations, fixed_shape=fixed is not None)
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


def _rodrigues(aa: np.ndarray) -> np.ndarray:
    theta = np.linalg.norm(aa, axis=-1, keepdims=True)
    k = aa / np.maximum(theta, 1e-12)
    K = np.zeros(aa.shape[:-1] + (3, 3))
    K[..., 0, 1], K[..., 0, 2], K[..., 1, 2] = -k[..., 2], k[..., 1], -k[..., 0]
    K = K - np.swapaxes(K, -1, -2)
    st, ct = np.sin(theta)[..., None], np.cos(theta)[..., None]
    return np.eye(3) + st * K + (1 - ct) * (K @ K)


def _gauss_newton(model, theta, y, s, R, t, w, lam, sig_n, sizes, shared, chunk, steps, fixed_shape=False):
    """Joint Gauss–Newton on coefficients θ and the similarity pose (rotation increment on the left, log
    scale, translation), residuals in model units: ``(y − t)/s − R[:D] · X(θ)``. ``fixed_shape``: the first S
    coefficients stay as given (only the others and the pose are solved for)."""
    b, P = theta.shape
    d = y.shape[-1]
    S = sizes[0]
    eps = 1e-4
    n_pose = 4 + d  # δω (3), δ log s (1), δt (D, in model units)
    lam_all = np.concatenate([lam, np.full(n_pose, 1e-9)])
    eye = np.eye(3)
    for _ in range(steps):
        Q = P + n_pose
        H = np.empty((b, Q, Q))
        g = np.empty((b, Q))
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
            Rt = np.swapaxes(R[i:i + n], 1, 2)
            rx = m0 @ Rt  # (n, K, 3) rotated model points
            k = rx.shape[1]
            j_theta = (J.reshape(n, -1, 3) @ Rt).reshape(n, P, k, 3)[..., :d]
            j_rot = np.cross(eye[None, :, None, :], rx[:, None])[..., :d]  # δω_e × R X
            j_scale = rx[:, None, :, :d]
            j_t = np.broadcast_to(np.eye(d)[None, :, None, :], (n, d, k, d))
            Jf = np.concatenate([j_theta, j_rot, j_scale, j_t], 1).reshape(n, Q, -1)
            r = ((y[i:i + n] - t[i:i + n, None, :d]) / s[i:i + n, None, None] - rx[..., :d]).reshape(n, -1)
            Jw = Jf * np.repeat(w, d)[None, None]
            H[i:i + n] = Jw @ np.swapaxes(Jf, 1, 2) / sig_n ** 2
            g[i:i + n] = (Jw @ r[..., None])[..., 0] / sig_n ** 2
        g[:, :P] -= lam * theta
        H = H + np.diag(lam_all)[None]
        if fixed_shape:
            delta = np.zeros_like(g)
            delta[:, S:] = np.linalg.solve(H[:, S:, S:], g[:, S:, None])[..., 0]
        elif not shared:
            delta = np.linalg.solve(H, g[..., None])[..., 0]
        else:  # one shape for the batch: eliminate the per-frame parameters (Schur complement)
            lam_s = np.diag(lam[:S])
            Hss = H[:, :S, :S] - (b - 1) / b * lam_s[None]  # the shape prior counts once, not per frame
            gs = g[:, :S] + (b - 1) / b * lam[:S] * theta[:, :S]
            Hse, Hee = H[:, :S, S:], H[:, S:, S:]
            inv_ee_es = np.linalg.solve(Hee, np.swapaxes(Hse, 1, 2))
            inv_ee_ge = np.linalg.solve(Hee, g[:, S:, None])[..., 0]
            ds = np.linalg.solve((Hss - Hse @ inv_ee_es).sum(0), (gs - np.einsum("bse,be->bs", Hse, inv_ee_ge)).sum(0))
            de = inv_ee_ge - np.einsum("bes,s->be", inv_ee_es, ds)
            delta = np.concatenate([np.broadcast_to(ds, (b, S)), de], 1)
        theta = theta + delta[:, :P]
        R = _rodrigues(delta[:, P:P + 3]) @ R
        t = t.copy()
        t[:, :d] += s[:, None] * delta[:, P + 4:]
        s = s * np.exp(delta[:, P + 3])
    return theta, s, R, t


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
