"""Identity preservation: CSIM, the cosine similarity between identity embeddings of two face sets.

CSIM as used in face reenactment/synthesis papers (e.g. Zakharov et al. 2019, "Few-Shot Adversarial Learning
of Realistic Neural Talking Head Models"; there with ArcFace embeddings) compares a generated face with the
source face through an identity network; here any identity embedding works (e.g. mien's face-api
FaceRecognitionNet descriptors, :func:`mien.models.faceapi.load_recognition_net`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["identity_similarity"]


def identity_similarity(a: Any, b: Any) -> np.ndarray:
    """Row-wise cosine similarity ``<a_i, b_i> / (|a_i| |b_i|)``.

    Args:
        a, b: (B, D) or (D,) identity embeddings (numpy or torch, any float dtype), paired by row.

    Returns:
        float64 (B,) in [−1, 1]; NaN for a pair where either embedding is all zeros or not finite.

    Raises:
        ValueError: shapes differ or are not (B, D) / (D,).
    """
    def arr(x):
        if hasattr(x, "detach"):
            x = x.detach().cpu().numpy()
        x = np.asarray(x, np.float64)
        return x[None] if x.ndim == 1 else x

    x, y = arr(a), arr(b)
    if x.ndim != 2 or x.shape != y.shape:
        raise ValueError(f"identity_similarity: a {x.shape} and b {y.shape} must both be (B, D)")
    nx, ny = np.linalg.norm(x, axis=1), np.linalg.norm(y, axis=1)
    den = nx * ny
    ok = (den > 0) & np.isfinite(den)
    out = np.full(len(x), np.nan)
    out[ok] = (x[ok] * y[ok]).sum(1) / den[ok]
    return np.clip(out, -1.0, 1.0)
