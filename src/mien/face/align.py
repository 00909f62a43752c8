"""Face alignment: square crops by a similarity transform (rotation + uniform scale + translation).

The crop frame is defined from three landmark-derived points — the two eye centres and the mouth centre —
in the manner of the FFHQ alignment (Karras et al. 2019): the crop's x axis runs along the eye line corrected
by the eye-to-mouth direction, its size is the larger of 2× the eye distance and 1.8× the eye-to-mouth
distance, and its centre is slightly below the eyes. A similarity never stretches: angles and length ratios of
the face are preserved exactly; only a uniform scale is applied.

Coordinates: source-frame pixels in, crop pixels out, both with x to the right and y down and the same
pixel convention as the landmarks (MediaPipe: ``x = normalised_x * width``).
"""

from __future__ import annotations

import cv2
import numpy as np

from mien.face import landmarks as L

# Outer mouth corners of the MediaPipe mesh (iBUG 48 and 54).
MOUTH_OUTER_CORNERS = np.array([61, 291])


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
