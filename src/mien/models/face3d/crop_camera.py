"""Between a learned encoder's crop camera and image pixels.

A learned 3-D face encoder (:mod:`mien.models.face3d.learned`) sees a face crop made by its crop contract
(:func:`mien.face.crops.parse_crop_contract`) and regresses an orthographic camera in crop-normalised
coordinates (:mod:`mien.models.face3d.params`)::

    n = s · R · X + (tx, ty, 0),   crop pixel u = (n_xy + 1) · S / 2 − 0.5

Every mien crop is a similarity ``A = [k Q | b]`` (2 × 3, image px → crop px: ``u = k Q x + b``), so the same
face in image pixels is ``x = scale · R_img · X + t`` (the convention of :mod:`mien.heads.face3d`) with::

    R_img = Rz(Q)ᵀ · R,   scale = S · s / (2 k),   t_xy = Qᵀ ((tx, ty) + 1) · S / 2 − 0.5 − b) / k,   t_z = 0

(Rz(Q) = Q extended by 1 on the z axis) — :func:`camera_to_image` and its inverse :func:`image_to_camera`.
"""

from __future__ import annotations

import numpy as np


def crop_affine(image: np.ndarray | None, crop: str, size: int, bbox: np.ndarray, landmarks: np.ndarray | None):
    """A face's crop and its image→crop affine.

    Args:
        image: (H, W, 3) uint8 RGB, or None (only the affine).
        crop: crop contract string. size: S px.
        bbox: (4,) landmark box px (box contracts). landmarks: (478, 2|3) px (aligned contracts).

    Returns:
        ((S, S, 3) uint8 crop or None, float64 (2, 3) affine image px → crop px).

    Raises:
        ValueError: unknown contract.
    """
    from mien.face.align import params_to_affine, similarity_params, warp_crop
    from mien.face.crops import crop_square, parse_crop_contract, square_box

    kind, value = parse_crop_contract(crop)
    if kind == "box":
        box = square_box(np.asarray(bbox), value).astype(np.float64)
        k = size / max(box[2] - box[0], 1e-6)
        A = np.array([[k, 0, -k * box[0]], [0, k, -k * box[1]]])
        return (crop_square(image, box, size) if image is not None else None), A
    A = params_to_affine(similarity_params(np.asarray(landmarks)[None], value), size)[0]
    return (warp_crop(image, A, size) if image is not None else None), A


def _split(affines: np.ndarray):
    A = np.asarray(affines, np.float64)
    k = np.sqrt(np.abs(np.linalg.det(A[:, :, :2])))
    Q = A[:, :, :2] / k[:, None, None]
    Rz = np.zeros((len(A), 3, 3))
    Rz[:, :2, :2], Rz[:, 2, 2] = Q, 1.0
    return k, Q, A[:, :, 2], Rz


def _rodrigues(R: np.ndarray) -> np.ndarray:
    import cv2

    return np.stack([cv2.Rodrigues(np.ascontiguousarray(r))[0][:, 0] for r in R]) if len(R) else np.zeros((0, 3))


def camera_to_image(rotation: np.ndarray, camera: np.ndarray, affines: np.ndarray, size: int) -> dict[str, np.ndarray]:
    """Crop camera → image pose.

    Args:
        rotation: (N, 3) axis-angle (rad) model → crop camera. camera: (N, 3) (s, tx, ty) crop-normalised.
        affines: (N, 2, 3) image → crop. size: S.

    Returns:
        dict: ``rotation`` (N, 3, 3) model → image axes, ``scale`` (N,) px per model unit, ``translation``
        (N, 3) px (z = 0), so that image point = scale · R · X + translation.
    """
    import cv2

    k, Q, b, Rz = _split(affines)
    R = np.stack([cv2.Rodrigues(np.asarray(r, np.float64))[0] for r in rotation]) if len(rotation) else np.zeros(
        (0, 3, 3))
    cam = np.asarray(camera, np.float64)
    u = (cam[:, 1:] + 1) * size / 2 - 0.5 - b
    t = np.einsum("nji,nj->ni", Q, u) / k[:, None]
    return {"rotation": np.swapaxes(Rz, 1, 2) @ R, "scale": size * cam[:, 0] / (2 * k),
            "translation": np.concatenate([t, np.zeros((len(t), 1))], 1)}


def image_to_camera(rotation: np.ndarray, scale: np.ndarray, translation: np.ndarray, affines: np.ndarray,
                    size: int) -> tuple[np.ndarray, np.ndarray]:
    """Image pose (as :func:`camera_to_image` returns) → crop camera: ((N, 3) axis-angle, (N, 3) (s, tx, ty))."""
    k, Q, b, Rz = _split(affines)
    R = Rz @ np.asarray(rotation, np.float64)
    s = 2 * k * np.asarray(scale, np.float64) / size
    t = np.asarray(translation, np.float64)[:, :2]
    txy = 2 * (k[:, None] * np.einsum("nij,nj->ni", Q, t) + b + 0.5) / size - 1
    return _rodrigues(R), np.concatenate([s[:, None], txy], 1)
