"""Similarity transforms of faces: the one least-squares estimator (Umeyama) and the FFHQ-style square crop.

Two jobs live here, both about similarities (rotation + uniform scale + translation; a similarity never
stretches: angles and length ratios are preserved exactly):

1. :func:`umeyama` / :func:`umeyama_batch` / :func:`align_to_reference` (:func:`umeyama_torch` on torch tensors):
   the least-squares similarity between two point sets in correspondence (Umeyama, "Least-squares estimation of
   transformation parameters between two point patterns", IEEE TPAMI 13(4), 1991), in 2-D or 3-D. It is mien's
   only similarity estimator: the AU model's geometry features (:mod:`mien.models.au.features`), the head frame of
   gaze (:func:`mien.face.geometry.to_head_frame`), prepare's window scoring
   (:func:`mien.face.geometry.frontal_landmarks`) and the warp tokenizer's bank distance
   (:func:`mien.models.tokenizer.bank.mesh_distance`) use it.
2. The crop's definition (:func:`similarity_params`): the crop frame is defined from three landmark-derived
   points — the two eye centres and the mouth centre — in the manner of the FFHQ alignment (Karras et al.
   2019): the crop's x axis runs along the eye line corrected by the eye-to-mouth direction, its size is the
   larger of 2× the eye distance and 1.8× the eye-to-mouth distance, and its centre is slightly below the
   eyes. This is a fixed construction, not a fit, so it does not use :func:`umeyama`.

Coordinates: source-frame pixels in, crop pixels out, both with x to the right and y down and the same
pixel convention as the landmarks (MediaPipe: ``x = normalised_x * width``).
"""

from __future__ import annotations

import cv2
import numpy as np

from mien.face import landmarks as L

# Outer mouth corners of the MediaPipe mesh (iBUG 48 and 54).
MOUTH_OUTER_CORNERS = np.array([61, 291])


def umeyama(src: np.ndarray, dst: np.ndarray, scale: bool = True) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares similarity ``dst ≈ s · R @ src + t`` between two point sets (Umeyama 1991).

    Minimises ``Σ_k ‖dst_k − (s·R·src_k + t)‖²`` over rotations ``R`` (proper: det +1, never a reflection),
    scales ``s`` and translations ``t``. Applied to row vectors: ``src @ R.T * s + t``.

    Args:
        src: (K, d) float points, d = 2 or 3, in any units.
        dst: (K, d) float points in correspondence with ``src`` (row k ↔ row k), in any units.
        scale: estimate the scale; if False, ``s = 1`` (a rigid transform).

    Returns:
        ``(s, R, t)``: scale (float, > 0, dst units per src unit), rotation float64 (d, d) with det +1,
        translation float64 (d,) in dst units.

    Raises:
        ValueError: shapes differ or are not (K, 2|3), non-finite values, or a degenerate configuration
            (fewer than 2 points, all source points equal, or points on one line in 3-D) for which the
            rotation is not unique.
    """
    src, dst = np.asarray(src), np.asarray(dst)
    if src.ndim != 2 or dst.ndim != 2:
        raise ValueError(f"umeyama: expected (K, 2|3) point sets, got {src.shape} and {dst.shape}")
    s, R, t = _umeyama(src[None], dst[None], scale, "umeyama")
    return float(s[0]), R[0], t[0]


def umeyama_batch(src: np.ndarray, dst: np.ndarray, scale: bool = True,
                  weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`umeyama` for B pairs of point sets at once (same result as a loop over the pairs).

    Args:
        src: (B, K, d) float points, d = 2 or 3.
        dst: (B, K, d) points in correspondence, or (K, d): one target for every item.
        scale: estimate the scale; if False, ``s = 1``.
        weights: optional (K,) or (B, K) non-negative point weights (weighted least squares: weighted
            centroids and covariance, as in Umeyama's derivation with a diagonal weight matrix); None: equal.

    Returns:
        ``(s, R, t)``: float64 (B,) scales, (B, d, d) rotations with det +1, (B, d) translations, with
        ``dst[b] ≈ s[b] · src[b] @ R[b].T + t[b]``.

    Raises:
        ValueError: as :func:`umeyama`; the message names the first degenerate item.
    """
    src = np.asarray(src)
    dst = np.asarray(dst)
    if dst.ndim == 2 and src.ndim == 3:
        dst = np.broadcast_to(dst, src.shape)
    if src.ndim != 3 or dst.ndim != 3:
        raise ValueError(f"umeyama_batch: expected (B, K, 2|3) point sets, got {src.shape} and {dst.shape}")
    return _umeyama(src, dst, scale, "umeyama_batch", weights)


def umeyama_torch(src, dst, scale: bool = True, weights=None):
    """:func:`umeyama_batch` on torch tensors (any device, differentiable where the SVD is), batched over any
    leading dimensions: the same maths (weighted centroids and covariance, SVD, reflection fix, s = tr(ΣD) / σ²_src).

    Degenerate sets are NOT rejected (no host synchronisation): coincident source points give s = 0 (t = the
    destination centroid) and a rotation that is not unique. Check inputs with :func:`umeyama_batch` where that
    matters.

    Args:
        src, dst: float (..., K, d) tensors, d = 2 or 3, broadcast against each other.
        scale: estimate the scale; if False, ``s = 1``.
        weights: optional non-negative (..., K) point weights (broadcast; rows not all zero); None: equal.

    Returns:
        ``(s, R, t)``: (...,) scales, (..., d, d) rotations with det +1, (..., d) translations in ``src``'s dtype,
        with ``dst ≈ s · src @ R.T + t``.
    """
    import torch

    src, dst = torch.broadcast_tensors(src, dst)
    k = src.shape[-2]
    w = src.new_full((k,), 1.0 / k) if weights is None else torch.as_tensor(weights, dtype=src.dtype,
                                                                            device=src.device)
    w = (w / w.sum(-1, keepdim=True))[..., None]  # (..., K, 1), rows summing to 1
    mu_s, mu_d = (w * src).sum(-2), (w * dst).sum(-2)
    xs, xd = src - mu_s[..., None, :], dst - mu_d[..., None, :]
    cov = (xd * w).transpose(-1, -2) @ xs  # Σ_xy (dst × src)
    var_s = (xs.square().sum(-1) * w[..., 0]).sum(-1)
    U, S, Vh = torch.linalg.svd(cov)
    sign = torch.ones_like(S)
    sign[..., -1] = torch.where(torch.linalg.det(U @ Vh) < 0, -1.0, 1.0)  # no reflections
    R = U @ (sign[..., None] * Vh)
    s = (S * sign).sum(-1) / var_s.clamp_min(torch.finfo(src.dtype).tiny) if scale else torch.ones_like(var_s)
    t = mu_d - s[..., None] * (R @ mu_s[..., None])[..., 0]
    return s, R, t


def align_to_reference(points: np.ndarray, reference: np.ndarray, scale: bool = True) -> np.ndarray:
    """Map each point set onto a reference shape by its own least-squares similarity (:func:`umeyama_batch`).

    What remains after the alignment is the shape: position, rotation and (if ``scale``) size are removed.

    Args:
        points: (B, K, d) or (K, d) float points, d = 2 or 3.
        reference: (K, d) target shape; the output is in its frame and units.
        scale: also remove the size (a similarity); if False only position and rotation (rigid).

    Returns:
        float64 (B, K, d) (or (K, d)): ``s_b · points[b] @ R_b.T + t_b``.

    Raises:
        ValueError: as :func:`umeyama_batch`.
    """
    pts = np.asarray(points, np.float64)
    single = pts.ndim == 2
    if single:
        pts = pts[None]
    s, R, t = umeyama_batch(pts, reference, scale)
    out = s[:, None, None] * np.einsum("bkj,bij->bki", pts, R) + t[:, None, :]
    return out[0] if single else out


def _umeyama(src: np.ndarray, dst: np.ndarray, scale: bool, name: str, weights: np.ndarray | None = None):
    if src.shape != dst.shape or src.shape[-1] not in (2, 3):
        raise ValueError(f"{name}: src and dst must have the same shape (..., K, 2|3), got {src.shape} and "
                         f"{dst.shape}")
    B, K, d = src.shape
    if K < 2:
        raise ValueError(f"{name}: need at least 2 points, got {K}")
    src = src.astype(np.float64, copy=False)
    dst = dst.astype(np.float64, copy=False)
    if not (np.isfinite(src).all() and np.isfinite(dst).all()):
        raise ValueError(f"{name}: points contain NaN or inf")
    if weights is None:
        w = np.full((1, 1, K), 1.0 / K)
        mu_s, mu_d = np.matmul(w, src), np.matmul(w, dst)  # (B, 1, d) centroids (a matmul: 10× faster than mean)
        xs, xd = src - mu_s, dst - mu_d
        mu_s, mu_d = mu_s[:, 0], mu_d[:, 0]
        cov = np.matmul(xd.transpose(0, 2, 1), xs) / K  # Σ_xy of the paper (dst × src)
        var_s = np.square(xs).sum((1, 2)) / K
        var_d = np.square(xd).sum((1, 2)) / K
    else:
        w = np.broadcast_to(np.asarray(weights, np.float64), (B, K))
        if (w < 0).any() or not np.isfinite(w).all() or (w.sum(1) <= 0).any():
            raise ValueError(f"{name}: weights must be finite, non-negative and not all zero")
        w = (w / w.sum(1, keepdims=True))[:, None, :]  # (B, 1, K), rows sum to 1
        mu_s, mu_d = np.matmul(w, src), np.matmul(w, dst)
        xs, xd = src - mu_s, dst - mu_d
        mu_s, mu_d = mu_s[:, 0], mu_d[:, 0]
        cov = np.matmul(xd.transpose(0, 2, 1), xs * w.transpose(0, 2, 1))
        var_s = (np.square(xs).sum(2) * w[:, 0]).sum(1)
        var_d = (np.square(xd).sum(2) * w[:, 0]).sum(1)
    U, S, Vt = np.linalg.svd(cov)
    # A unique rotation needs rank(Σ_xy) >= d − 1 (Umeyama 1991, Lemma): reject coincident sets (spread below
    # 1e-6 of the coordinates' magnitude) and, in 3-D, sets on one line.
    for bad, what in ((var_s <= 1e-12 * (var_s + np.square(mu_s).sum(1)), "all source points coincide"),
                      (var_d <= 1e-12 * (var_d + np.square(mu_d).sum(1)), "all destination points coincide"),
                      (S[:, d - 2] <= 1e-10 * S[:, 0], "the points lie on one line")):
        if bad.any():
            where = f" (item {int(np.argmax(bad))})" if name == "umeyama_batch" else ""
            raise ValueError(f"{name}: degenerate point sets{where}: {what}, so the rotation is not unique")
    UVt = np.matmul(U, Vt)
    reflect = np.linalg.det(UVt) < 0  # det(U)·det(Vᵀ) = −1: flip the smallest axis (no reflections)
    if reflect.any():
        U = U.copy()
        U[reflect, :, -1] *= -1
        S = S.copy()
        S[reflect, -1] *= -1
        UVt = np.matmul(U, Vt)
    R = UVt
    s = S.sum(1) / var_s if scale else np.ones(B)
    t = mu_d - s[:, None] * np.matmul(R, mu_s[:, :, None])[:, :, 0]
    return s, R, t


def alignment_points(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Eye and mouth centres of faces.

    Args:
        landmarks: (..., 478, ≥2) float, source pixels.

    Returns:
        (eye_img_left, eye_img_right, mouth): each (..., 2) float64 pixels; ``eye_img_left`` is the eye on
        the image's left (the subject's right eye in an unmirrored frame).
    """
    lm = np.asarray(landmarks, np.float64)[..., :2]
    eye_r = lm[..., L.EYE_RIGHT, :].mean(-2)  # subject's right eye = image left
    eye_l = lm[..., L.EYE_LEFT, :].mean(-2)
    mouth = lm[..., MOUTH_OUTER_CORNERS, :].mean(-2)
    return eye_r, eye_l, mouth


def similarity_params(landmarks: np.ndarray, margin: float = 0.0) -> np.ndarray:
    """Crop parameters of faces (FFHQ-style square around eyes and mouth).

    Args:
        landmarks: (T, 478, ≥2) float, source pixels.
        margin: extra border as a fraction of the default half size (0.2 → a 20 % wider crop); >= -0.5.

    Returns:
        float64 (T, 4): centre x, centre y (source px), half size (source px, > 0), angle (radians, of the
        crop's x axis in the source frame, positive = clockwise on screen since y points down).

    Raises:
        ValueError: bad shapes or margin.
    """
    lm = np.asarray(landmarks, np.float64)
    if lm.ndim != 3 or lm.shape[1] < 468:
        raise ValueError(f"landmarks must be (T, 478, 2|3), got {lm.shape}")
    if margin < -0.5:
        raise ValueError(f"margin must be >= -0.5, got {margin}")
    el, er, mouth = alignment_points(lm)
    eye_avg = (el + er) / 2
    eye_to_eye = er - el
    eye_to_mouth = mouth - eye_avg
    # x axis: eye line, corrected by the direction perpendicular to eye-to-mouth (FFHQ).
    perp = np.stack([eye_to_mouth[:, 1], -eye_to_mouth[:, 0]], -1)
    x = eye_to_eye + perp
    x /= np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-9)
    half = np.maximum(np.linalg.norm(eye_to_eye, axis=-1) * 2.0, np.linalg.norm(eye_to_mouth, axis=-1) * 1.8)
    half = np.maximum(half, 1e-3) * (1.0 + margin)
    centre = eye_avg + eye_to_mouth * 0.1
    angle = np.arctan2(x[:, 1], x[:, 0])
    return np.concatenate([centre, half[:, None], angle[:, None]], -1)


def smooth_params(params: np.ndarray, sigma_frames: float) -> np.ndarray:
    """Temporally smooth crop parameters (Gaussian, in frames) — centre, log size and unwrapped angle.

    Args:
        params: (T, 4) from :func:`similarity_params`.
        sigma_frames: Gaussian standard deviation in frames (0: no smoothing).

    Returns:
        (T, 4) float64.
    """
    p = np.array(params, np.float64, copy=True)
    if sigma_frames <= 0 or len(p) < 2:
        return p
    from scipy.ndimage import gaussian_filter1d

    q = np.stack([p[:, 0], p[:, 1], np.log(p[:, 2]), np.unwrap(p[:, 3])], -1)
    q = gaussian_filter1d(q, sigma_frames, axis=0, mode="nearest")
    return np.stack([q[:, 0], q[:, 1], np.exp(q[:, 2]), q[:, 3]], -1)


def params_to_affine(params: np.ndarray, crop_size: int) -> np.ndarray:
    """2x3 affine matrices mapping source pixels to crop pixels.

    ``crop = s · R(-angle) · (p - centre) + crop_size / 2`` with ``s = crop_size / (2 · half)``.

    Args:
        params: (T, 4) from :func:`similarity_params` / :func:`smooth_params`.
        crop_size: crop side in pixels.

    Returns:
        float64 (T, 2, 3); the linear part is ``s·[[cos, sin], [-sin, cos]]`` (a similarity).
    """
    p = np.asarray(params, np.float64)
    s = crop_size / (2.0 * p[:, 2])
    c, sn = np.cos(p[:, 3]), np.sin(p[:, 3])
    A = np.empty((len(p), 2, 3))
    A[:, 0, 0], A[:, 0, 1] = s * c, s * sn
    A[:, 1, 0], A[:, 1, 1] = -s * sn, s * c
    ctr = p[:, :2]
    A[:, :, 2] = crop_size / 2.0 - np.einsum("tij,tj->ti", A[:, :, :2], ctr)
    return A


def transform_landmarks(landmarks: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Landmarks from source to crop pixels.

    Args:
        landmarks: (T, K, 3) source px (z in pixel scale).
        affine: (T, 2, 3) from :func:`params_to_affine`.

    Returns:
        float32 (T, K, 3): x, y in crop pixels; z multiplied by the same uniform scale.
    """
    lm = np.asarray(landmarks, np.float64)
    xy = np.einsum("tij,tkj->tki", affine[:, :, :2], lm[..., :2]) + affine[:, None, :, 2]
    scale = np.sqrt(np.abs(np.linalg.det(affine[:, :, :2])))
    out = np.concatenate([xy, lm[..., 2:3] * scale[:, None, None]], -1) if lm.shape[-1] > 2 else xy
    return out.astype(np.float32)


def warp_crop(image: np.ndarray, affine: np.ndarray, crop_size: int) -> np.ndarray:
    """Apply one source→crop affine to an image.

    Args:
        image: RGB uint8 (H, W, 3) source frame.
        affine: (2, 3) source→crop.
        crop_size: output side in pixels.

    Returns:
        RGB uint8 (crop_size, crop_size, 3); area outside the source is black.
    """
    A = np.asarray(affine, np.float64)
    scale = np.sqrt(abs(np.linalg.det(A[:, :2])))
    if scale < 0.5:  # strong downscaling: pre-shrink with area averaging to avoid aliasing
        f = max(scale * 1.5, 1e-3)
        small = cv2.resize(image, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
        fx = small.shape[1] / image.shape[1]
        fy = small.shape[0] / image.shape[0]
        A = A @ np.array([[1 / fx, 0, 0], [0, 1 / fy, 0], [0, 0, 1]])
        image = small
    return cv2.warpAffine(image, A, (crop_size, crop_size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
