"""Input features of mien's AU models, computed identically for training images and for ``mien analyze``.

The default AU model (:func:`mien.models.au.load_default_au_model`) takes, per face, the concatenation of

1. ``expression``: the 256-d face-api expression embedding (:meth:`FaceExpressionNet.embed
   <mien.models.faceapi.nets.FaceExpressionNet.embed>`, non-negative float32) of the face crop
   ``crop_square(image, square_box(bbox, 1.1), 112)`` from :mod:`mien.face.crops`, where ``bbox`` is the
   box of the 478 MediaPipe landmarks (x_min, y_min, x_max, y_max in pixels) — the crop ``mien analyze``
   makes for its expression net;
2. ``geometry``: the 468 face-mesh landmarks (irises dropped) aligned to MediaPipe's canonical face
   (:func:`mien.face.geometry.canonical_face`, centimetres) by the least-squares 3-D similarity transform
   (Umeyama 1991, :func:`mien.face.align.align_to_reference`), minus the canonical face, flattened x, y, z
   per point: 1404 values in centimetres.
   The alignment removes position, scale and head rotation; what remains is the face's shape, i.e. identity
   shape plus expression.

Shapes: B faces, K = 478 landmarks, D = 256 + 1404 = 1660 features.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "CROP_SCALE",
    "CROP_SIZE",
    "EXPRESSION_DIM",
    "GEOMETRY_DIM",
    "align_to_canonical",
    "expression_embeddings",
    "face_crops",
    "geometry_features",
    "mirror_indices",
    "mirror_landmarks",
    "tight_crop_landmarks",
]

CROP_SCALE = 1.1
"""Side of the square crop as a multiple of the longer side of the landmark box (as ``mien analyze``)."""
CROP_SIZE = 112
"""Side in pixels of the crop fed to the face-api expression net."""
N_MESH = 468
EXPRESSION_DIM = 256
GEOMETRY_DIM = N_MESH * 3


def face_crops(images: Sequence[np.ndarray], bboxes: np.ndarray, scale: float = CROP_SCALE,
               size: int = CROP_SIZE) -> np.ndarray:
    """Square face crops around landmark boxes, exactly as ``mien analyze`` cuts them.

    Args:
        images: B RGB uint8 images (H, W, 3); a (H, W) gray image is replicated to RGB.
        bboxes: (B, 4) landmark boxes x_min, y_min, x_max, y_max in the pixels of each image.
        scale: enlargement of the box's longer side (:data:`CROP_SCALE`).
        size: output side (:data:`CROP_SIZE`).

    Returns:
        (B, size, size, 3) uint8 RGB; parts of the square outside the image are black.

    Raises:
        ValueError: ``images`` and ``bboxes`` differ in length, or an image is not (H, W) or (H, W, 3).
    """
    from mien.face.crops import crop_square, square_box

    bboxes = np.asarray(bboxes, np.float32).reshape(-1, 4)
    if len(images) != len(bboxes):
        raise ValueError(f"face_crops: {len(images)} images but {len(bboxes)} boxes")
    out = np.zeros((len(images), size, size, 3), np.uint8)
    for i, (img, box) in enumerate(zip(images, bboxes, strict=True)):
        img = np.asarray(img)
        if img.ndim == 2:
            img = np.repeat(img[:, :, None], 3, axis=2)
        if img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"face_crops: image {i} has shape {img.shape}, expected (H, W, 3)")
        out[i] = crop_square(np.ascontiguousarray(img), square_box(box, scale), size)
    return out


def expression_embeddings(crops: np.ndarray, net=None, batch_size: int = 64) -> np.ndarray:
    """face-api expression embeddings of (B, 112, 112, 3) uint8 RGB crops.

    Args:
        crops: (B, 112, 112, 3) uint8 RGB from :func:`face_crops`.
        net: a loaded :class:`~mien.models.faceapi.nets.FaceExpressionNet` (loaded on the CPU if None).
        batch_size: crops per forward pass.

    Returns:
        (B, 256) float32, non-negative.
    """
    import torch

    from mien.models.faceapi import load_expression_net, to_batch_tensor

    if net is None:
        net = load_expression_net()
    device = next(net.parameters()).device
    out = []
    with torch.inference_mode():
        for i in range(0, len(crops), batch_size):
            x = to_batch_tensor(list(crops[i:i + batch_size]), CROP_SIZE).to(device)
            out.append(net.embed(x).float().cpu().numpy())
    if not out:
        return np.zeros((0, EXPRESSION_DIM), np.float32)
    return np.concatenate(out).astype(np.float32)


def align_to_canonical(landmarks: np.ndarray) -> np.ndarray:
    """Align face meshes to MediaPipe's canonical face by a 3-D similarity transform per face.

    Args:
        landmarks: (B, K, 3) or (K, 3) MediaPipe landmarks (K = 478 or 468; only the first 468 are used),
            x, y, z in pixels as :class:`~mien.face.landmarker.MediaPipeFaceMesh` returns them (any uniform
            scale works).

    Returns:
        float32 (B, 468, 3) (or (468, 3)) in the canonical face's frame and units (cm).

    Raises:
        ValueError: fewer than 468 landmarks, non-finite values, or a degenerate mesh (all points equal or on
            one line).
    """
    from mien.face.align import align_to_reference
    from mien.face.geometry import canonical_face

    lm = np.asarray(landmarks, np.float64)
    single = lm.ndim == 2
    if single:
        lm = lm[None]
    if lm.ndim != 3 or lm.shape[1] < N_MESH or lm.shape[2] != 3:
        raise ValueError(f"align_to_canonical: expected (B, 478, 3) landmarks, got {lm.shape}")
    lm = lm[:, :N_MESH]
    if not np.isfinite(lm).all():
        raise ValueError("align_to_canonical: landmarks contain NaN or inf")
    out = align_to_reference(lm, canonical_face().astype(np.float64)).astype(np.float32)
    return out[0] if single else out


def geometry_features(landmarks: np.ndarray) -> np.ndarray:
    """Aligned-mesh residuals: :func:`align_to_canonical` minus the canonical face, flattened.

    Args:
        landmarks: (B, K, 3) MediaPipe landmarks in pixels (K >= 468).

    Returns:
        (B, 1404) float32 in centimetres, ordered point 0 x, y, z, point 1 x, y, z, ...

    Raises:
        ValueError: as :func:`align_to_canonical`.
    """
    from mien.face.geometry import canonical_face

    lm = np.asarray(landmarks)
    if lm.ndim == 2:
        lm = lm[None]
    aligned = align_to_canonical(lm)
    return (aligned - canonical_face()[None]).reshape(len(aligned), GEOMETRY_DIM).astype(np.float32)


TIGHT_CROP_UPSCALE = 4
TIGHT_CROP_PAD = 0.5


def tight_crop_landmarks(images: Sequence[np.ndarray], mesh=None, upscale: int = TIGHT_CROP_UPSCALE,
                         pad: float = TIGHT_CROP_PAD) -> np.ndarray:
    """MediaPipe landmarks for small, tightly cropped face images (e.g. CK+48's 48×48 crops).

    MediaPipe's face detector misses most faces that fill the whole image (77 % of CK+48 frames at a plain
    4× upscale). Each image is therefore upscaled ``upscale``× (bicubic), padded with black by ``pad`` × its
    upscaled side on every side, run through the landmarker, and the landmarks are mapped back to the
    original image's pixels (z scaled like x). With the defaults every one of the 729 FACS-labelled CK+48
    frames gets a face.

    Args:
        images: RGB uint8 (H, W, 3) or gray (H, W) images.
        mesh: a :class:`~mien.face.landmarker.MediaPipeFaceMesh`; a static-image full-range one is made
            (and closed) when None.
        upscale: integer upscale factor before detection.
        pad: border added on each side, as a fraction of the upscaled side.

    Returns:
        float32 (B, 478, 3) in the original images' pixels; rows of NaN where no face was found.
    """
    import cv2

    own = mesh is None
    if own:
        from mien.face.landmarker import MediaPipeFaceMesh

        mesh = MediaPipeFaceMesh(static_image_mode=True, detector="full")
    out = np.full((len(images), 478, 3), np.nan, np.float32)
    try:
        for i, img in enumerate(images):
            img = np.asarray(img)
            if img.ndim == 2:
                img = np.repeat(img[:, :, None], 3, axis=2)
            h, w = img.shape[:2]
            big = cv2.resize(img, (w * upscale, h * upscale), interpolation=cv2.INTER_CUBIC)
            p = int(round(pad * max(big.shape[:2])))
            big = cv2.copyMakeBorder(big, p, p, p, p, cv2.BORDER_CONSTANT, value=(0, 0, 0))
            faces = mesh.process(np.ascontiguousarray(big))
            if faces:
                lm = faces[0].landmarks.copy()
                lm[:, :2] -= p
                out[i] = lm / upscale
    finally:
        if own:
            mesh.close()
    return out


def mirror_indices() -> np.ndarray:
    """(468,) int64 permutation pairing each face-mesh vertex with its left/right mirror image.

    Computed from the canonical face, which is exactly symmetric about x = 0: vertex i maps to the vertex at
    (−x_i, y_i, z_i) (the map is an involution; midline vertices map to themselves).
    """
    return _mirror_indices().copy()


def _mirror_indices() -> np.ndarray:
    from mien.face.geometry import canonical_face

    global _MIRROR
    if _MIRROR is None:
        c = canonical_face().astype(np.float64)
        m = c * np.array([-1.0, 1.0, 1.0])
        d = ((m[:, None, :] - c[None, :, :]) ** 2).sum(-1)
        _MIRROR = d.argmin(1).astype(np.int64)
    return _MIRROR


_MIRROR: np.ndarray | None = None


def mirror_landmarks(landmarks: np.ndarray, width: float) -> np.ndarray:
    """Landmarks of the horizontally flipped image: x -> width − x, vertices swapped left/right.

    Args:
        landmarks: (B, K, 3) or (K, 3) in pixels, K >= 468; only the 468 mesh vertices are returned.
        width: image width in pixels (the flip maps pixel coordinate x to width − x).

    Returns:
        float32 (B, 468, 3) (or (468, 3)).
    """
    lm = np.asarray(landmarks, np.float32)
    out = lm[..., :N_MESH, :][..., _mirror_indices(), :].copy()
    out[..., 0] = width - out[..., 0]
    return out
