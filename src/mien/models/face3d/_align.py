"""Batched similarity alignment (Umeyama 1991) used by the face-model build and the landmark fit.

TODO(merge): use mien.face.align.umeyama (added by the "geometry" branch) and delete this module.
"""

from __future__ import annotations

import numpy as np


def umeyama(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None,
            scale: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares similarity ``dst ≈ s · R · src + t`` per batch item (no reflection).

    Args:
        src: (B, K, D) or (K, D) points, D = 2 or 3.
        dst: same shape as ``src``.
        weights: (K,) or (B, K) non-negative point weights (None: all 1).
        scale: estimate ``s`` (False: s = 1, rigid).

    Returns:
        s (B,), R (B, D, D) with det +1, t (B, D) — float64; unbatched inputs give unbatched outputs.
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    single = src.ndim == 2
    if single:
        src, dst = src[None], dst[None]
    if src.shape != dst.shape:
        raise ValueError(f"umeyama: src {src.shape} and dst {dst.shape} differ")
    b, k, d = src.shape
    w = np.ones((b, k)) if weights is None else np.broadcast_to(np.asarray(weights, np.float64), (b, k))
    w = w / np.maximum(w.sum(1, keepdims=True), 1e-12)
    mu_s = np.einsum("bk,bkd->bd", w, src)
    mu_d = np.einsum("bk,bkd->bd", w, dst)
    xs, xd = src - mu_s[:, None], dst - mu_d[:, None]
    cov = np.einsum("bk,bki,bkj->bij", w, xd, xs)
    U, S, Vt = np.linalg.svd(cov)
    sign = np.ones((b, d))
    sign[:, -1] = np.sign(np.linalg.det(U) * np.linalg.det(Vt))
    sign[sign == 0] = 1.0
    R = U @ (sign[:, :, None] * Vt)
    var_s = np.einsum("bk,bk->b", w, (xs ** 2).sum(-1))
    s = (S * sign).sum(1) / np.maximum(var_s, 1e-12) if scale else np.ones(b)
    t = mu_d - s[:, None] * np.einsum("bij,bj->bi", R, mu_s)
    return (s[0], R[0], t[0]) if single else (s, R, t)
