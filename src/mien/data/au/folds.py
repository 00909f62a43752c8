"""Subject-disjoint cross-validation folds (GroupKFold-like, numpy only)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["subject_kfold"]


def subject_kfold(groups: Sequence, n_splits: int = 5, seed: int | None = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Subject-disjoint k-fold (GroupKFold-like): each subject is in exactly one validation fold.

    Subjects are (optionally, with ``seed``) shuffled, then sorted by sample count (largest first, stable) and each
    assigned to the fold with the fewest samples so far.

    Args:
        groups: (N,) subject id per sample.
        n_splits: k ≥ 2, at most the number of subjects.
        seed: shuffle seed for ties (None: no shuffle).

    Returns:
        k pairs ``(train_idx, val_idx)`` of int64 index arrays.

    Raises:
        ValueError: k < 2 or more folds than subjects.
    """
    g = np.asarray([str(x) for x in groups])
    subjects, inverse, counts = np.unique(g, return_inverse=True, return_counts=True)
    if n_splits < 2 or n_splits > len(subjects):
        raise ValueError(f"n_splits must be in [2, {len(subjects)}] (number of subjects), got {n_splits}")
    order = np.arange(len(subjects))
    if seed is not None:
        order = np.random.default_rng(seed).permutation(order)
    order = order[np.argsort(-counts[order], kind="stable")]
    fold_of = np.empty(len(subjects), np.int64)
    load = np.zeros(n_splits, np.int64)
    for s in order:
        f = int(np.argmin(load))
        fold_of[s] = f
        load[f] += counts[s]
    sample_fold = fold_of[inverse]
    idx = np.arange(len(g))
    return [(idx[sample_fold != f], idx[sample_fold == f]) for f in range(n_splits)]
