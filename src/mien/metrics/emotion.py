"""Emotion (single-label, C-class) classification metrics: accuracy, macro-F1 and the confusion matrix.

Inputs: ``y_true`` (N,) integer class indices in [0, C); ``y_pred`` either (N,) integer class indices or
(N, C) scores/probabilities (the argmax is taken), as numpy arrays or torch tensors. Counting is done with
torchmetrics' ``multiclass_confusion_matrix``; accuracy and F1 are read off the matrix.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["accuracy", "confusion_matrix", "emotion_f1", "emotion_macro_f1"]


def _labels(y_true: Any, y_pred: Any, num_classes: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    def arr(x):
        if hasattr(x, "detach"):
            x = x.detach().cpu().numpy()
        return np.asarray(x)

    t, p = arr(y_true), arr(y_pred)
    if p.ndim == 2:
        if num_classes is None:
            num_classes = p.shape[1]
        elif p.shape[1] != num_classes:
            raise ValueError(f"y_pred has {p.shape[1]} columns but num_classes={num_classes}")
        p = p.argmax(1)
    if t.ndim != 1 or p.ndim != 1 or t.shape != p.shape:
        raise ValueError(f"y_true must be (N,) and y_pred (N,) or (N, C); got {t.shape} and {p.shape}")
    if t.size and not (np.issubdtype(t.dtype, np.integer) or np.all(t == np.round(t))):
        raise ValueError("y_true must hold integer class indices")
    t, p = t.astype(np.int64), p.astype(np.int64)
    if num_classes is None:
        num_classes = int(max(t.max(initial=-1), p.max(initial=-1))) + 1
    if t.size and (t.min() < 0 or p.min() < 0 or t.max() >= num_classes or p.max() >= num_classes):
        raise ValueError(f"class indices must lie in [0, {num_classes})")
    return t, p, int(num_classes)


def confusion_matrix(y_true: Any, y_pred: Any, num_classes: int | None = None) -> np.ndarray:
    """Confusion matrix ``M[i, j]`` = number of samples of true class i predicted as class j.

    Args:
        y_true: (N,) int class indices.
        y_pred: (N,) int class indices or (N, C) scores.
        num_classes: C; inferred from the scores' width or the largest index when None.

    Returns:
        int64 (C, C).

    Raises:
        ValueError: bad shapes or class indices outside [0, C).
    """
    import torch
    from torchmetrics.functional.classification import multiclass_confusion_matrix

    t, p, c = _labels(y_true, y_pred, num_classes)
    if t.size == 0:
        return np.zeros((c, c), np.int64)
    m = multiclass_confusion_matrix(torch.from_numpy(p), torch.from_numpy(t), num_classes=c)
    return m.numpy().astype(np.int64)


def accuracy(y_true: Any, y_pred: Any, num_classes: int | None = None) -> float:
    """Fraction of samples whose predicted class equals the true class; NaN for N = 0."""
    m = confusion_matrix(y_true, y_pred, num_classes)
    n = m.sum()
    return float(np.trace(m) / n) if n else float("nan")


def emotion_f1(y_true: Any, y_pred: Any, num_classes: int | None = None) -> np.ndarray:
    """Per-class F1 = 2·TP / (2·TP + FP + FN) (one-vs-rest).

    Returns:
        float64 (C,); NaN for a class that neither occurs nor is predicted (F1 undefined).
    """
    m = confusion_matrix(y_true, y_pred, num_classes).astype(np.float64)
    tp = np.diag(m)
    den = 2 * tp + (m.sum(0) - tp) + (m.sum(1) - tp)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, 2 * tp / np.where(den > 0, den, 1), np.nan)


def emotion_macro_f1(y_true: Any, y_pred: Any, num_classes: int | None = None) -> float:
    """Unweighted mean of :func:`emotion_f1` over the classes where it is defined (NaN if none)."""
    f1 = emotion_f1(y_true, y_pred, num_classes)
    return float(np.nanmean(f1)) if np.isfinite(f1).any() else float("nan")
