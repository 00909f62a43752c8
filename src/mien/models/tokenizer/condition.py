"""Global conditioning features of an expression tokenizer (``TokenizerConfig.global_condition``, issue 9): mien's
AU-model features or AU probabilities of each face crop, computed the same way at training and inference time.

The crop (the tokenizer's own, e.g. a 64² aligned face) goes through the AU path for tight crops:
MediaPipe landmarks on the upscaled, black-padded crop (:func:`mien.models.au.tight_crop_features`), the
face-api expression embedding of the 1.1× landmark-box crop ‖ the canonical-aligned mesh (1660); for
"au-probabilities" the default AU model's probabilities of those features (A). "crop-mesh": the 468 MediaPipe
mesh points of the same landmarker run, in the crop's own frame, as offsets from :func:`canonical_crop_mesh` in
units of 10 % of the crop side (936; expression moves points by ~0.1 unit). A crop without a detected
face gets a zero row (and is counted in the returned mask).
"""

from __future__ import annotations

import numpy as np

__all__ = ["CROP_MESH_SCALE", "canonical_crop_mesh", "crop_mesh_points", "global_condition"]

CROP_MESH_SCALE = 10.0
"""The ``crop-mesh`` condition's values are the offsets (fractions of the crop side) × this: units of 10 % of the
side."""


def canonical_crop_mesh() -> np.ndarray:
    """MediaPipe's frontal canonical face (:func:`mien.face.geometry.canonical_face`) placed in the aligned crop by
    the crop's own similarity alignment (:func:`mien.face.align.similarity_params`, margin 0): float64 (468, 2),
    x, y in units of the crop side (0..1)."""
    from mien.face.align import params_to_affine, similarity_params, transform_landmarks
    from mien.face.geometry import canonical_face

    c = canonical_face().astype(np.float64)[None]
    a = params_to_affine(similarity_params(c, 0.0), 1)
    return transform_landmarks(c, a)[0, :, :2].astype(np.float64)


def crop_mesh_points(condition: np.ndarray, size: int) -> np.ndarray:
    """The mesh a ``crop-mesh`` condition encodes: float64 (M, 468, 2) x, y in the pixels of a ``size`` × ``size``
    crop, from float (M, 936) rows of :func:`global_condition` (a row of a crop without a face gives the canonical
    mesh)."""
    g = np.asarray(condition, np.float64)
    return (g.reshape(len(g), -1, 2) / CROP_MESH_SCALE + canonical_crop_mesh()) * size


def global_condition(crops: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-crop global features.

    Args:
        crops: uint8 (M, S, S, 3) RGB face crops.
        kind: "au-features" (G = 1660), "au-probabilities" (G = the default AU model's A) or "crop-mesh"
            (G = 936).

    Returns:
        (float32 (M, G), face_found bool (M,)); rows without a face are zeros.

    Raises:
        ValueError: unknown kind or wrong crop shape.
    """
    from mien.models.tokenizer.config import GLOBAL_CONDITIONS, global_condition_dim

    crops = np.asarray(crops)
    if crops.ndim != 4 or crops.shape[-1] != 3:
        raise ValueError(f"expected crops (M, S, S, 3) uint8, got {crops.shape}")
    if kind not in GLOBAL_CONDITIONS[1:]:  # every condition but "none"
        raise ValueError(f"unknown global condition {kind!r}")
    g = global_condition_dim(kind)
    out = np.zeros((len(crops), g), np.float32)
    if len(crops) == 0:
        return out, np.zeros(0, bool)
    if kind == "crop-mesh":
        from mien.models.au.features import tight_crop_landmarks

        lm = tight_crop_landmarks(list(crops))
        ok = np.isfinite(lm).all(axis=(1, 2))
        out[ok] = ((lm[ok, :468, :2] / crops.shape[1] - canonical_crop_mesh()) * CROP_MESH_SCALE).reshape(
            int(ok.sum()), -1)
        return out, ok
    from mien.models.au import predict_au, tight_crop_features

    feats, _, ok = tight_crop_features(list(crops), mirror=False)
    if ok.any():
        out[ok] = feats[ok] if kind == "au-features" else predict_au(feats[ok])
    return out, ok
