"""Model selection with honest estimates: per-AU decision thresholds chosen on training folds only, and nested
subject-disjoint cross-validation (model selection inside each outer fold).

Why (issue 9): mien's default AU model was chosen by looking at the same 5-fold CV that reported its accuracy,
and its thresholds were fixed at 0.5; on 30 CK+ subjects it never saw, its F1 fell from 0.79 to 0.68 with rare
AUs failing first. Nested CV (Varma & Simon 2006, "Bias in error estimation when using cross-validation for
model selection", BMC Bioinformatics 7:91; Cawley & Talbot 2010, JMLR 11) estimates what the *whole* recipe —
choose a candidate and thresholds by CV, refit — achieves on subjects it never saw:

* outer loop: subject-disjoint folds (:func:`mien.data.au.subject_kfold`); the outer test fold is used only to
  score the final choice of that fold;
* inner loop, on the outer training subjects only (:func:`select_model`): every candidate's out-of-fold
  probabilities → per-AU F1-maximising thresholds (:func:`best_f1_thresholds`) → score = mean F1 at those
  thresholds; the best candidate is refit on all outer-training rows and scored on the outer fold with the
  thresholds chosen inside.

Training is injected as ``fit_predict(candidate, train_idx, test_idx) -> (len(test_idx), A) probabilities`` so
this module stays free of any model family (the AU trainer's version is
:func:`mien.tasks.au.fit_predict_features`). Shapes: N samples, A AUs (label columns), K folds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mien.data.au.folds import subject_kfold

__all__ = ["NestedCVResult", "Selection", "best_f1_thresholds", "nested_cv", "select_model"]

FitPredict = Callable[[str, np.ndarray, np.ndarray], np.ndarray]
"""``fit_predict(candidate, train_idx, test_idx) -> float (len(test_idx), A)`` probabilities in [0, 1]."""


def best_f1_thresholds(labels: Any, scores: Any, default: float = 0.5, grid: Sequence[float] | None = None
                       ) -> np.ndarray:
    """Per-AU decision threshold that maximises F1 on (labels, scores) — meant for training-fold scores only.

    Args:
        labels: (N, A) 0/1 labels; NaN = not coded (ignored).
        scores: (N, A) probabilities in [0, 1].
        default: threshold of an AU without a positive label.
        grid: candidate thresholds (default 0.02, 0.04, …, 0.98: a coarse grid does not chase single samples).

    Returns:
        float64 (A,) thresholds; a frame is positive when ``score >= threshold``. Ties go to the threshold
        closest to 0.5.

    Raises:
        ValueError: shapes differ.
    """
    y = np.asarray(labels, np.float64)
    s = np.asarray(scores, np.float64)
    if y.ndim == 1:
        y, s = y[:, None], s.reshape(-1, 1)
    if y.shape != s.shape:
        raise ValueError(f"labels {y.shape} and scores {s.shape} must have the same shape")
    g = np.asarray(grid if grid is not None else np.round(np.arange(1, 50) / 50, 4), np.float64)
    order = np.argsort(np.abs(g - 0.5), kind="stable")  # ties: nearest to 0.5 wins
    g = g[order]
    out = np.full(y.shape[1], float(default))
    for j in range(y.shape[1]):
        ok = np.isfinite(y[:, j]) & np.isfinite(s[:, j])
        t, p = y[ok, j] == 1, s[ok, j]
        if not t.any():
            continue
        pred = p[:, None] >= g[None, :]
        tp = (pred & t[:, None]).sum(0)
        f1 = 2 * tp / (t.sum() + pred.sum(0))
        out[j] = g[int(np.argmax(f1))]
    return out


def _f1_at(labels: np.ndarray, scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    from mien.metrics.au import au_f1

    return au_f1(labels, scores, thresholds)


@dataclass
class Selection:
    """What :func:`select_model` chose on one set of subjects.

    Attributes:
        candidate: the chosen candidate's name.
        thresholds: float64 (A,) its per-AU thresholds, from its out-of-fold scores on these subjects.
        scores: {candidate: mean F1 at its own CV thresholds} (the selection criterion).
        oof: {candidate: float64 (N_sel, A) out-of-fold probabilities} over the rows given to select_model.
    """

    candidate: str
    thresholds: np.ndarray
    scores: dict[str, float]
    oof: dict[str, np.ndarray] = field(repr=False)


def select_model(labels: Any, groups: Any, candidates: Sequence[str], fit_predict: FitPredict,
                 rows: Any = None, folds: int = 4, seed: int | None = 0, min_positives: int = 1) -> Selection:
    """Choose a candidate and its per-AU thresholds by subject-disjoint CV over ``rows`` only.

    Args:
        labels: (N, A) 0/1/NaN labels of the whole data set.
        groups: (N,) subject per row.
        candidates: candidate names understood by ``fit_predict``.
        fit_predict: see :data:`FitPredict` (indices are into the whole data set).
        rows: int indices of the rows to use (default all); nothing outside them is fit, scored or thresholded.
        folds: CV folds over the subjects of ``rows``.
        seed: fold seed.
        min_positives: AUs with fewer positives among ``rows`` are left out of the selection score.

    Returns:
        :class:`Selection`.

    Raises:
        ValueError: no candidates, or more folds than subjects.
    """
    if not candidates:
        raise ValueError("select_model needs at least one candidate")
    y = np.asarray(labels, np.float64)
    if y.ndim == 1:
        y = y[:, None]
    g = np.asarray(groups)
    rows = np.arange(len(y)) if rows is None else np.asarray(rows, np.int64)
    ys = y[rows]
    pos = np.nansum(ys, 0)
    scored = pos >= min_positives
    splits = subject_kfold(g[rows], folds, seed)
    oof, thr, score = {}, {}, {}
    for c in candidates:
        p = np.full(ys.shape, np.nan)
        for tr, va in splits:
            p[va] = fit_predict(c, rows[tr], rows[va])
        oof[c] = p
        thr[c] = best_f1_thresholds(ys, p)
        f1 = _f1_at(ys, p, thr[c])
        score[c] = float(np.nanmean(f1[scored])) if scored.any() else float("nan")
    best = max(candidates, key=lambda c: (np.nan_to_num(score[c], nan=-1.0), -list(candidates).index(c)))
    return Selection(best, thr[best], score, oof)


@dataclass
class NestedCVResult:
    """Outer out-of-fold results of :func:`nested_cv`.

    Attributes:
        scores: float64 (N, A) outer out-of-fold probabilities (each row scored by the model chosen and refit
            without its subject).
        fold: int64 (N,) outer fold of each row.
        thresholds: float64 (K, A) the per-AU thresholds chosen inside each outer fold's training subjects.
        chosen: K candidate names, one per outer fold.
        inner_scores: K dicts {candidate: inner selection score}.
    """

    scores: np.ndarray
    fold: np.ndarray
    thresholds: np.ndarray
    chosen: list[str]
    inner_scores: list[dict[str, float]]

    def row_thresholds(self) -> np.ndarray:
        """(N, A) the threshold applied to each row (its outer fold's)."""
        return self.thresholds[self.fold]

    def predictions(self) -> np.ndarray:
        """(N, A) bool decisions at the inner-chosen thresholds."""
        return self.scores >= self.row_thresholds()

    def f1(self, labels: Any) -> np.ndarray:
        """Per-AU F1 (A,) of the pooled outer decisions at the thresholds chosen inside the training folds."""
        y = np.asarray(labels, np.float64)
        y = y[:, None] if y.ndim == 1 else y
        return _f1_at(y, self.predictions().astype(np.float64), 0.5)

    def f1_at(self, labels: Any, threshold: float = 0.5) -> np.ndarray:
        """Per-AU F1 (A,) of the pooled outer scores at one fixed threshold."""
        return _f1_at(np.asarray(labels, np.float64), self.scores, threshold)

    def auc(self, labels: Any) -> np.ndarray:
        """Per-AU ROC AUC (A,) of the pooled outer scores."""
        from mien.metrics.au import au_roc_auc

        return au_roc_auc(labels, self.scores)


def nested_cv(labels: Any, groups: Any, candidates: Sequence[str], fit_predict: FitPredict, outer: int = 5,
              inner: int = 4, seed: int | None = 0, min_positives: int = 1, log: Callable[[str], None] | None = None
              ) -> NestedCVResult:
    """Nested subject-disjoint CV of "select a candidate and its thresholds by CV, then refit".

    For each outer fold k: :func:`select_model` on the outer-training rows only (``inner`` folds), refit the chosen
    candidate on all outer-training rows, score the outer fold. The outer test rows never reach ``fit_predict`` as
    training rows, nor the threshold or candidate choice.

    Args:
        labels, groups, candidates, fit_predict, seed, min_positives: as in :func:`select_model`.
        outer: outer folds (:func:`~mien.data.au.subject_kfold` over all subjects).
        inner: inner folds.
        log: optional progress callback (one line per outer fold).

    Returns:
        :class:`NestedCVResult`.

    Raises:
        ValueError: more folds than subjects; no candidates.
    """
    y = np.asarray(labels, np.float64)
    if y.ndim == 1:
        y = y[:, None]
    g = np.asarray(groups)
    scores = np.full(y.shape, np.nan)
    fold = np.full(len(y), -1, np.int64)
    thresholds = np.zeros((outer, y.shape[1]))
    chosen, inner_scores = [], []
    for k, (tr, te) in enumerate(subject_kfold(g, outer, seed)):
        sel = select_model(y, g, candidates, fit_predict, rows=tr, folds=inner, seed=seed,
                           min_positives=min_positives)
        scores[te] = fit_predict(sel.candidate, tr, te)
        fold[te] = k
        thresholds[k] = sel.thresholds
        chosen.append(sel.candidate)
        inner_scores.append(sel.scores)
        if log is not None:
            log(f"outer fold {k}: chose {sel.candidate} (inner scores "
                + ", ".join(f"{c} {v:.3f}" for c, v in sel.scores.items()) + ")")
    return NestedCVResult(scores, fold, thresholds, chosen, inner_scores)
