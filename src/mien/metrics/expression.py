"""Expression consistency between two sets of faces (an input and its reconstruction, a source and an
expression-transfer output): agreement of face-api emotion probabilities and of mien AU vectors, frame by
frame.

SMIRK (Retsinas et al., CVPR 2024) and TEASER (Liu et al., ICLR 2025) measure expression fidelity by
recognising emotion on the rendered reconstruction; here the recogniser is face-api's FaceExpressionNet (the
network shipped with mien, which replaces their EMOCA emotion ResNet) and the AU vectors come from mien's
default AU model.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["expression_consistency"]


def expression_consistency(emotion_a: Any, emotion_b: Any, au_a: Any = None, au_b: Any = None) -> dict[str, float]:
    """Agreement of per-frame expression read-outs of two paired face sets.

    Args:
        emotion_a, emotion_b: (N, C) emotion probabilities (rows sum to 1) of the paired faces (row i of a
            with row i of b).
        au_a, au_b: optional (N, A) AU occurrence probabilities in [0, 1] of the same pairs.

    Returns:
        dict: ``n`` pairs; ``emotion_top1`` share of pairs with the same most probable emotion (1 = all);
        ``emotion_tv`` mean total-variation distance ½‖p_a − p_b‖₁ in [0, 1] (0 = identical);
        ``emotion_corr`` Pearson r of the probabilities pooled over pairs and classes; with AUs:
        ``au_mae`` mean |Δ| over pairs and AUs, ``au_corr`` mean over AUs of the per-AU Pearson r across
        pairs (AUs constant on either side are left out; NaN if all are).

    Raises:
        ValueError: shapes differ or are not 2-D.
    """
    a, b = np.asarray(emotion_a, np.float64), np.asarray(emotion_b, np.float64)
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"emotion probabilities must be two (N, C) arrays of one shape, got {a.shape}, {b.shape}")
    out: dict[str, float] = {"n": len(a)}
    if len(a) == 0:
        return {**out, "emotion_top1": float("nan"), "emotion_tv": float("nan"), "emotion_corr": float("nan")}
    out["emotion_top1"] = float((a.argmax(1) == b.argmax(1)).mean())
    out["emotion_tv"] = float(0.5 * np.abs(a - b).sum(1).mean())
    out["emotion_corr"] = _pearson(a.ravel(), b.ravel())
    if au_a is not None and au_b is not None:
        x, y = np.asarray(au_a, np.float64), np.asarray(au_b, np.float64)
        if x.ndim != 2 or x.shape != y.shape or len(x) != len(a):
            raise ValueError(f"AU vectors must be two (N, A) arrays of one shape with N={len(a)}, got {x.shape}, "
                             f"{y.shape}")
        out["au_mae"] = float(np.abs(x - y).mean())
        rs = [_pearson(x[:, j], y[:, j]) for j in range(x.shape[1])]
        rs = [r for r in rs if np.isfinite(r)]
        out["au_corr"] = float(np.mean(rs)) if rs else float("nan")
    return out


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])
