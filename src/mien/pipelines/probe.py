"""Linear probes: how much of a label a representation encodes, read out by a linear classifier.

:func:`linear_probe` fits one L2-regularised, class-balanced logistic regression per AU on the features of the
training subjects and scores the held-out subjects (subject-disjoint folds, :func:`mien.data.au.subject_kfold`),
then reports per-AU F1 (threshold 0.5 on the balanced model's probability) and ROC AUC over the out-of-fold
scores. It is the standard check that a representation (expression tokens, a backbone's pooled features,
mien's AU features) encodes expression (issue 9). :func:`linear_probe_classes` is the multi-class
counterpart (tokens → emotion, e.g. CK+48): accuracy, balanced accuracy and per-class F1.

The regression is a small full-batch L-BFGS fit in torch (float64; all AUs at once, independent columns):
features are standardised with the training fold's mean and std, and positives are weighted by
``negatives / positives`` of the training fold, so that 0.5 is a sensible threshold for rare AUs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mien.data.au.folds import subject_kfold


@dataclass
class ProbeResult:
    """Out-of-fold linear-probe scores.

    Attributes:
        f1: float64 (A,) per-AU F1 in [0, 1] at probability ≥ 0.5; NaN for an AU without positives.
        auc: float64 (A,) per-AU ROC AUC in [0, 1]; NaN for an AU with one class.
        positives: int64 (A,) positive labels per AU (NaN labels not counted).
        scores: float64 (N, A) out-of-fold probabilities in [0, 1].
        fold: int64 (N,) the fold in which each sample was held out (its subject's fold).
    """

    f1: np.ndarray
    auc: np.ndarray
    positives: np.ndarray
    scores: np.ndarray
    fold: np.ndarray

    def mean_f1(self, min_positives: int = 30) -> float:
        """Mean F1 over AUs with at least ``min_positives`` positives (NaN when none qualifies)."""
        keep = (self.positives >= min_positives) & np.isfinite(self.f1)
        return float(self.f1[keep].mean()) if keep.any() else float("nan")

    def mean_auc(self, min_positives: int = 30) -> float:
        """Mean ROC AUC over AUs with at least ``min_positives`` positives (NaN when none qualifies)."""
        keep = (self.positives >= min_positives) & np.isfinite(self.auc)
        return float(self.auc[keep].mean()) if keep.any() else float("nan")


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-2, max_iter: int = 200):
    """Fit independent, class-balanced, L2-regularised logistic regressions, one per label column.

    Args:
        x: float (N, D) features.
        y: (N, A) labels in {0, 1}; NaN = unknown (left out of that column's loss).
        l2: weight of the mean squared weight penalty (on standardised features).
        max_iter: L-BFGS iterations.

    Returns:
        ``predict(x_new) -> float64 (M, A)`` probabilities in [0, 1] (standardisation included).

    Raises:
        ValueError: shapes do not match, or labels other than 0, 1 and NaN.
    """
    import torch

    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    if x.ndim != 2 or y.ndim != 2 or len(x) != len(y):
        raise ValueError(f"expected x (N, D) and y (N, A), got {x.shape} and {y.shape}")
    known = np.isfinite(y)
    if not np.isin(y[known], (0.0, 1.0)).all():
        raise ValueError("labels must be 0, 1 or NaN")
    mu, sd = x.mean(0), x.std(0)
    sd = np.where(sd > 1e-12, sd, 1.0)
    xt = torch.from_numpy((x - mu) / sd)
    yt = torch.from_numpy(np.where(known, y, 0.0))
    mask = torch.from_numpy(known.astype(np.float64))
    pos = (yt * mask).sum(0)
    neg = mask.sum(0) - pos
    pos_weight = neg / pos.clamp(min=1.0)
    w = torch.zeros(x.shape[1], y.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(y.shape[1], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")
    n_known = mask.sum(0).clamp(min=1.0)

    def closure():
        opt.zero_grad()
        logits = xt @ w + b
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, yt, reduction="none",
                                                                    pos_weight=pos_weight)
        total = ((loss * mask).sum(0) / n_known).sum() + l2 * (w ** 2).sum(0).mean() * y.shape[1]
        total.backward()
        return total

    with torch.enable_grad():
        opt.step(closure)
    w_np, b_np = w.detach().numpy(), b.detach().numpy()

    def predict(x_new: Any) -> np.ndarray:
        z = ((np.asarray(x_new, np.float64) - mu) / sd) @ w_np + b_np
        return 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))

    return predict


def linear_probe(features: Any, labels: Any, groups: Any, folds: int = 5, l2: float = 1e-2,
                 seed: int | None = 0) -> ProbeResult:
    """Subject-disjoint linear probe from features to binary AU labels.

    Args:
        features: float (N, D) one feature vector per frame (tokens, pooled backbone features, AU features).
        labels: (N, A) AU occurrence in {0, 1}; NaN = not coded (ignored in fit and scores).
        groups: (N,) subject id per frame; each subject is held out in exactly one fold.
        folds: k ≥ 2 folds (at most the number of subjects).
        l2: L2 penalty of :func:`fit_logistic`.
        seed: fold-assignment seed (:func:`~mien.data.au.subject_kfold`).

    Returns:
        :class:`ProbeResult` with per-AU F1 (threshold 0.5) and AUC over all out-of-fold scores.

    Raises:
        ValueError: shapes do not match, labels not 0/1/NaN, or more folds than subjects.
    """
    from mien.metrics.au import au_f1, au_roc_auc

    x = np.asarray(features, np.float64)
    y = np.asarray(labels, np.float64)
    if y.ndim == 1:
        y = y[:, None]
    g = np.asarray(groups)
    if x.ndim != 2 or len(x) != len(y) or len(g) != len(x):
        raise ValueError(f"expected features (N, D), labels (N, A), groups (N,); got {x.shape}, {y.shape}, "
                         f"{g.shape}")
    scores = np.full(y.shape, np.nan)
    fold = np.full(len(x), -1, np.int64)
    for k, (tr, va) in enumerate(subject_kfold(g, folds, seed)):
        scores[va] = fit_logistic(x[tr], y[tr], l2)(x[va])
        fold[va] = k
    known = np.isfinite(y)
    positives = np.where(known, y, 0).sum(0).astype(np.int64)
    return ProbeResult(au_f1(y, scores, 0.5), au_roc_auc(y, scores), positives, scores, fold)


@dataclass
class ClassProbeResult:
    """Out-of-fold multi-class linear-probe scores (e.g. emotion).

    Attributes:
        accuracy: fraction of held-out samples whose arg-max class is right, in [0, 1].
        balanced_accuracy: mean per-class recall in [0, 1] (chance = 1 / C).
        f1: float64 (C,) per-class F1 in [0, 1] (NaN for a class without samples).
        probs: float64 (N, C) out-of-fold probabilities (rows sum to 1).
        fold: int64 (N,) the fold in which each sample was held out.
    """

    accuracy: float
    balanced_accuracy: float
    f1: np.ndarray
    probs: np.ndarray
    fold: np.ndarray


def _fit_softmax(x: np.ndarray, y: np.ndarray, n_classes: int, l2: float, max_iter: int = 200):
    import torch

    mu, sd = x.mean(0), x.std(0)
    sd = np.where(sd > 1e-12, sd, 1.0)
    xt, yt = torch.from_numpy((x - mu) / sd), torch.from_numpy(y)
    counts = torch.bincount(yt, minlength=n_classes).double()
    weight = torch.where(counts > 0, counts.sum() / (n_classes * counts.clamp(min=1.0)), torch.zeros(()))
    w = torch.zeros(x.shape[1], n_classes, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(n_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(xt @ w + b, yt, weight=weight) + l2 * (w ** 2).sum(0).mean()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    w_np, b_np = w.detach().numpy(), b.detach().numpy()

    def predict(x_new: np.ndarray) -> np.ndarray:
        z = ((x_new - mu) / sd) @ w_np + b_np
        z = np.exp(z - z.max(1, keepdims=True))
        return z / z.sum(1, keepdims=True)

    return predict


def linear_probe_classes(features: Any, labels: Any, groups: Any, folds: int = 5, l2: float = 1e-2,
                         seed: int | None = 0) -> ClassProbeResult:
    """Subject-disjoint multinomial linear probe (e.g. tokens → emotion on CK+48), class-balanced.

    Args:
        features: float (N, D).
        labels: int (N,) class index in [0, C).
        groups: (N,) subject id per sample.
        folds, l2, seed: as in :func:`linear_probe`.

    Returns:
        :class:`ClassProbeResult` (C = labels.max() + 1).

    Raises:
        ValueError: shapes do not match, negative labels, or more folds than subjects.
    """
    x = np.asarray(features, np.float64)
    y = np.asarray(labels)
    g = np.asarray(groups)
    if x.ndim != 2 or y.ndim != 1 or len(y) != len(x) or len(g) != len(x):
        raise ValueError(f"expected features (N, D), labels (N,), groups (N,); got {x.shape}, {y.shape}, "
                         f"{g.shape}")
    if not np.issubdtype(y.dtype, np.integer) or (y < 0).any():
        raise ValueError("labels must be non-negative class indices")
    y = y.astype(np.int64)
    c = int(y.max()) + 1
    probs = np.zeros((len(x), c))
    fold = np.full(len(x), -1, np.int64)
    for k, (tr, va) in enumerate(subject_kfold(g, folds, seed)):
        probs[va] = _fit_softmax(x[tr], y[tr], c, l2)(x[va])
        fold[va] = k
    pred = probs.argmax(1)
    f1, recall = np.full(c, np.nan), []
    for j in range(c):
        tp = float(((pred == j) & (y == j)).sum())
        n_true, n_pred = float((y == j).sum()), float((pred == j).sum())
        if n_true:
            f1[j] = 2 * tp / (n_true + n_pred)
            recall.append(tp / n_true)
    return ClassProbeResult(float((pred == y).mean()), float(np.mean(recall)), f1, probs, fold)


__all__ = ["ClassProbeResult", "ProbeResult", "fit_logistic", "linear_probe", "linear_probe_classes"]
