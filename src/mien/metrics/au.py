"""Action Unit (AU) metrics: occurrence (F1, F1 at the EER threshold, AP, ROC AUC) and intensity (ICC(3,1),
Pearson r, MAE), per AU and macro-averaged.

Conventions shared by every function here

- Inputs are numpy arrays or torch tensors of shape (N,) (one AU) or (N, A) (N frames, A AUs, one column per
  AU, e.g. AU01…AU45 in a fixed order). Any float or int dtype; computation is in float64.
- ``y_true`` for occurrence metrics holds 0/1 labels; ``y_score`` holds scores where larger means "more
  likely present" (probabilities in [0, 1] for :func:`f1_score`; any real values for the threshold-free
  metrics). A frame is predicted positive when ``score >= threshold``.
- Rows where ``y_true`` or ``y_score`` is NaN are ignored for that AU (e.g. AUs not coded in some frames).
- An AU whose (remaining) labels contain a single class gets NaN for the metrics that need both classes
  (AP, ROC AUC, EER, F1 at the EER threshold), and F1 is NaN when the AU has no positive label (recall is
  undefined). Intensity metrics return NaN when either column is constant (zero variance) or has fewer than 2
  rows. Macro averages are ``nanmean`` over AUs (NaN only if every AU is NaN). No warnings are raised for NaN.
- Results are float64 numpy arrays of shape (A,) (a 0-d array is never returned; a 1-D input gives (1,)).

Sources: F1/AP/ROC AUC as in scikit-learn/torchmetrics (AP = Σ_n (R_n − R_{n−1}) P_n, no interpolation);
EER as in FaceFlow's ``binary_eer`` (tensorsense/faceflow) but computed from the exact ROC, not a 51-point grid;
ICC(3,1) from Shrout & Fleiss (1979), "Intraclass correlations: uses in assessing rater reliability",
Psychological Bulletin 86(2), 420–428 — the usual AU-intensity metric (e.g. FERA 2015, DISFA benchmarks).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "au_average_precision",
    "au_f1",
    "au_f1_at_eer",
    "au_icc",
    "au_mae",
    "au_pearson",
    "au_roc_auc",
    "eer_threshold",
    "icc3_1",
    "icc_mean_squares",
    "macro_f1",
]


def _as_2d(x: Any, name: str) -> np.ndarray:
    """numpy float64 (N, A) from a numpy array / torch tensor / sequence of shape (N,) or (N, A)."""
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().cpu().numpy()
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(f"{name} must have shape (N,) or (N, A), got {a.shape}")
    return a


def _pair(y_true: Any, y_score: Any) -> tuple[np.ndarray, np.ndarray]:
    t, s = _as_2d(y_true, "y_true"), _as_2d(y_score, "y_score")
    if t.shape != s.shape:
        raise ValueError(f"y_true {t.shape} and y_score {s.shape} must have the same shape")
    return t, s


def _columns(y_true: Any, y_score: Any, binary: bool = True):
    """Yield (t, s) per AU with NaN rows removed; checks labels are 0/1 when ``binary``."""
    t, s = _pair(y_true, y_score)
    for j in range(t.shape[1]):
        keep = np.isfinite(t[:, j]) & ~np.isnan(s[:, j])
        tj, sj = t[keep, j], s[keep, j]
        if binary and not np.isin(tj, (0.0, 1.0)).all():
            raise ValueError(f"y_true column {j} must hold only 0/1 labels (or NaN)")
        yield tj, sj


def _both_classes(t: np.ndarray) -> bool:
    return t.size > 0 and 0 < t.sum() < t.size


def _torch():
    import torch

    return torch


def au_f1(y_true: Any, y_score: Any, threshold: float | Any = 0.5) -> np.ndarray:
    """Per-AU F1 = 2·TP / (2·TP + FP + FN) with a frame positive when ``y_score >= threshold``.

    Args:
        y_true: (N,) or (N, A) 0/1 labels (NaN = ignore).
        y_score: same shape, probabilities or any scores (NaN = ignore).
        threshold: one threshold, or (A,) thresholds, one per AU.

    Returns:
        float64 (A,) in [0, 1]; NaN for an AU without positive labels.

    Raises:
        ValueError: shapes differ, labels are not 0/1, or the thresholds do not match A.
    """
    from torchmetrics.functional.classification import binary_f1_score

    torch = _torch()
    t2, _ = _pair(y_true, y_score)
    thr = np.broadcast_to(np.asarray(threshold, np.float64), (t2.shape[1],)) if np.ndim(threshold) == 0 \
        else np.asarray(threshold, np.float64)
    if thr.shape != (t2.shape[1],):
        raise ValueError(f"threshold must be a scalar or have shape ({t2.shape[1]},), got {thr.shape}")
    out = np.full(t2.shape[1], np.nan)
    for j, (t, s) in enumerate(_columns(y_true, y_score)):
        if t.sum() == 0 or not np.isfinite(thr[j]):
            continue
        pred = torch.from_numpy((s >= thr[j]).astype(np.int64))
        out[j] = float(binary_f1_score(pred, torch.from_numpy(t.astype(np.int64))))
    return out


def macro_f1(y_true: Any, y_score: Any, threshold: float | Any = 0.5) -> float:
    """Mean over AUs of :func:`au_f1` (AUs whose F1 is NaN are skipped; NaN if all are)."""
    f1 = au_f1(y_true, y_score, threshold)
    return float(np.nanmean(f1)) if np.isfinite(f1).any() else float("nan")


def _roc(t: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact ROC: for each distinct score (descending) as threshold, FPR and FNR of ``s >= threshold``."""
    order = np.argsort(-s, kind="mergesort")
    s_sorted, t_sorted = s[order], t[order]
    last = np.r_[np.nonzero(np.diff(s_sorted))[0], s_sorted.size - 1]  # last index of each distinct score
    tp = np.cumsum(t_sorted)[last]
    fp = np.cumsum(1.0 - t_sorted)[last]
    p, n = t.sum(), t.size - t.sum()
    return s_sorted[last], fp / n, 1.0 - tp / p


def eer_threshold(y_true: Any, y_score: Any) -> tuple[np.ndarray, np.ndarray]:
    """Equal-error-rate operating point per AU, from the exact ROC.

    Every distinct score ``t`` is a candidate threshold (frame positive when ``score >= t``), with
    FPR(t) = FP / #negatives and FNR(t) = FN / #positives = 1 − TPR(t). The EER threshold is the candidate
    minimising |FPR − FNR| (ties: the largest such threshold) and the EER is (FPR + FNR) / 2 there. This is
    FaceFlow's definition evaluated at every ROC point rather than on a 0.02 grid.

    Args:
        y_true: (N,) or (N, A) 0/1 labels (NaN = ignore).
        y_score: same shape, scores (NaN = ignore).

    Returns:
        ``(thresholds, eer)``: two float64 (A,) arrays; NaN for an AU with a single class.

    Raises:
        ValueError: shapes differ or labels are not 0/1.
    """
    cols = list(_columns(y_true, y_score))
    thr = np.full(len(cols), np.nan)
    eer = np.full(len(cols), np.nan)
    for j, (t, s) in enumerate(cols):
        if not _both_classes(t):
            continue
        thresholds, fpr, fnr = _roc(t, s)
        k = int(np.argmin(np.abs(fpr - fnr)))  # first minimum = largest threshold
        thr[j], eer[j] = thresholds[k], (fpr[k] + fnr[k]) / 2
    return thr, eer


def au_f1_at_eer(y_true: Any, y_score: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per-AU F1 at each AU's own EER threshold (:func:`eer_threshold`) on the same data.

    Note that the threshold is chosen with the labels being scored (as FaceFlow does); for an unbiased
    estimate, take the thresholds from other data and use :func:`au_f1`.

    Returns:
        ``(f1, thresholds)``: float64 (A,) each; NaN for an AU with a single class.
    """
    thr, _ = eer_threshold(y_true, y_score)
    return au_f1(y_true, y_score, thr), thr


def au_average_precision(y_true: Any, y_score: Any) -> np.ndarray:
    """Per-AU average precision AP = Σ_n (R_n − R_{n−1}) · P_n over thresholds (torchmetrics).

    Scores outside [0, 1] are fine (torchmetrics applies a sigmoid, which keeps the ranking).

    Returns:
        float64 (A,) in [0, 1]; NaN for an AU with a single class.
    """
    from torchmetrics.functional.classification import binary_average_precision

    return _per_au_binary(binary_average_precision, y_true, y_score)


def au_roc_auc(y_true: Any, y_score: Any) -> np.ndarray:
    """Per-AU area under the ROC curve (torchmetrics ``binary_auroc``; ties count one half).

    Returns:
        float64 (A,) in [0, 1]; NaN for an AU with a single class.
    """
    from torchmetrics.functional.classification import binary_auroc

    return _per_au_binary(binary_auroc, y_true, y_score)


def _per_au_binary(metric, y_true: Any, y_score: Any) -> np.ndarray:
    """Apply a torchmetrics binary metric ``metric(scores, targets)`` to each AU column (NaN: one class)."""
    torch = _torch()
    cols = list(_columns(y_true, y_score))
    out = np.full(len(cols), np.nan)
    for j, (t, s) in enumerate(cols):
        if _both_classes(t):
            out[j] = float(metric(torch.from_numpy(s), torch.from_numpy(t.astype(np.int64))))
    return out


def icc_mean_squares(ratings: Any) -> dict[str, float]:
    """Two-way ANOVA mean squares of an (n targets, k raters) table, as in Shrout & Fleiss (1979), Table 1.

    With grand mean m, target (row) means r_i and rater (column) means c_j:
    BMS = k·Σ(r_i − m)² / (n − 1) (between targets), JMS = n·Σ(c_j − m)² / (k − 1) (between raters),
    EMS = (SS_total − SS_targets − SS_raters) / ((n − 1)(k − 1)) (residual),
    WMS = (SS_total − SS_targets) / (n(k − 1)) (within targets).

    Args:
        ratings: (n, k) array, n >= 2 targets, k >= 2 raters, no NaN.

    Returns:
        dict with float keys ``BMS``, ``JMS``, ``EMS``, ``WMS``.

    Raises:
        ValueError: not 2-D, fewer than 2 targets or raters, or NaN/inf values.
    """
    x = _as_2d(ratings, "ratings")
    n, k = x.shape
    if n < 2 or k < 2:
        raise ValueError(f"ratings must be (n >= 2 targets, k >= 2 raters), got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("ratings contain NaN or inf")
    m = x.mean()
    ss_total = ((x - m) ** 2).sum()
    ss_rows = k * ((x.mean(1) - m) ** 2).sum()
    ss_cols = n * ((x.mean(0) - m) ** 2).sum()
    ss_err = ss_total - ss_rows - ss_cols
    return {
        "BMS": ss_rows / (n - 1),
        "JMS": ss_cols / (k - 1),
        "EMS": ss_err / ((n - 1) * (k - 1)),
        "WMS": (ss_total - ss_rows) / (n * (k - 1)),
    }


def icc3_1(ratings: Any) -> float:
    """ICC(3,1) of an (n targets, k raters) table: two-way mixed model, consistency, single rater.

    ICC(3,1) = (BMS − EMS) / (BMS + (k − 1)·EMS) with the mean squares of :func:`icc_mean_squares`
    (Shrout & Fleiss 1979, eq. for Case 3). Rater offsets (JMS) do not lower it; a constant shift of one
    rater leaves it unchanged.

    Returns:
        float in [−1/(k−1), 1]; NaN when the denominator is 0 (e.g. every rating equal).

    Raises:
        ValueError: as :func:`icc_mean_squares`.
    """
    ms = icc_mean_squares(ratings)
    k = _as_2d(ratings, "ratings").shape[1]
    den = ms["BMS"] + (k - 1) * ms["EMS"]
    if not den > 1e-12 * max(1.0, abs(ms["BMS"])):
        return float("nan")
    return float((ms["BMS"] - ms["EMS"]) / den)


def au_icc(y_true: Any, y_pred: Any) -> np.ndarray:
    """Per-AU ICC(3,1) between ground-truth and predicted intensities (k = 2 raters per AU column).

    Args:
        y_true, y_pred: (N,) or (N, A) intensities (e.g. 0–5); rows with NaN are ignored per AU.

    Returns:
        float64 (A,); NaN for an AU with fewer than 2 rows or with every value equal.
    """
    out = []
    for t, s in _columns(y_true, y_pred, binary=False):
        out.append(icc3_1(np.stack([t, s], 1)) if t.size >= 2 else np.nan)
    return np.asarray(out, np.float64)


def au_pearson(y_true: Any, y_pred: Any) -> np.ndarray:
    """Per-AU Pearson correlation coefficient r (torchmetrics ``pearson_corrcoef``).

    Returns:
        float64 (A,) in [−1, 1]; NaN for an AU with fewer than 2 rows or a constant column.
    """
    from torchmetrics.functional import pearson_corrcoef

    torch = _torch()
    out = []
    for t, s in _columns(y_true, y_pred, binary=False):
        if t.size < 2 or np.ptp(t) == 0 or np.ptp(s) == 0:
            out.append(np.nan)
        else:
            out.append(float(pearson_corrcoef(torch.from_numpy(s), torch.from_numpy(t))))
    return np.asarray(out, np.float64)


def au_mae(y_true: Any, y_pred: Any) -> np.ndarray:
    """Per-AU mean absolute error mean(|y_pred − y_true|) (torchmetrics ``mean_absolute_error``).

    Returns:
        float64 (A,) >= 0 in the units of the inputs; NaN for an AU with no rows.
    """
    from torchmetrics.functional import mean_absolute_error

    torch = _torch()
    out = []
    for t, s in _columns(y_true, y_pred, binary=False):
        out.append(float(mean_absolute_error(torch.from_numpy(s), torch.from_numpy(t))) if t.size else np.nan)
    return np.asarray(out, np.float64)
