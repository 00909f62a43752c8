"""Nested CV and training-fold thresholds (mien.pipelines.model_selection): the outer test fold never reaches a
fit, a threshold or a model choice."""

import numpy as np
import pytest

from mien.data.au import subject_kfold
from mien.pipelines.model_selection import best_f1_thresholds, nested_cv, select_model


def test_best_f1_thresholds_known_answer():
    y = np.array([[0], [0], [1], [1], [np.nan]])
    s = np.array([[0.1], [0.3], [0.7], [0.9], [0.0]])
    thr = best_f1_thresholds(y, s)
    # any threshold in (0.3, 0.7] separates the classes; ties go to the one nearest 0.5
    assert thr.shape == (1,) and thr[0] == 0.5
    assert best_f1_thresholds(np.zeros((3, 1)), np.ones((3, 1)), default=0.4)[0] == 0.4  # no positive


def _data(seed=0):
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(20), 6)
    y = (rng.random((len(groups), 2)) < 0.4).astype(float)
    # fixed scores: on subjects 0-3 the classes separate around 0.8, elsewhere around 0.3
    hi = np.isin(groups, [0, 1, 2, 3])
    s = np.where(y == 1, 0.35, 0.25) + rng.normal(0, 0.01, y.shape)
    s[hi] = np.where(y[hi] == 1, 0.9, 0.75)
    return groups, y, s


def test_nested_cv_thresholds_come_from_training_folds_only():
    groups, y, s = _data()
    calls = []

    def fit_predict(candidate, tr, te):
        calls.append((candidate, np.asarray(tr), np.asarray(te)))
        return s[te] if candidate == "good" else np.full((len(te), y.shape[1]), 0.5)

    res = nested_cv(y, groups, ["bad", "good"], fit_predict, outer=5, inner=3, seed=0)
    outer = subject_kfold(groups, 5, 0)
    differs = 0
    for k, (tr, _) in enumerate(outer):
        # the thresholds of fold k are exactly those of the training rows' scores ...
        np.testing.assert_array_equal(res.thresholds[k], best_f1_thresholds(y[tr], s[tr]))
        # ... and seeing the test fold would have changed them for at least one fold (the test is sensitive)
        differs += not np.array_equal(res.thresholds[k], best_f1_thresholds(y, s))
        assert res.chosen[k] == "good"
    assert differs >= 1
    test_sets = [set(te.tolist()) for _, te in outer]
    per_fold = len(calls) // 5  # 2 candidates x 3 inner folds + 1 refit
    assert per_fold == 7
    for k in range(5):
        fold_calls = calls[k * per_fold:(k + 1) * per_fold]
        for _, tr, _te in fold_calls:
            assert not test_sets[k] & set(tr.tolist())  # never trained on the outer test fold
        for _, _, te in fold_calls[:-1]:
            assert not test_sets[k] & set(te.tolist())  # inner scores (thresholds, choice) never use it
        refit = calls[(k + 1) * per_fold - 1]
        assert refit[0] == "good" and set(refit[2].tolist()) == test_sets[k]
    assert (res.fold >= 0).all() and np.isfinite(res.scores).all()
    f1 = res.f1(y)
    assert f1.shape == (2,) and np.all((f1 >= 0) & (f1 <= 1))


def test_select_model_uses_only_given_rows():
    groups, y, s = _data(1)
    rows = np.flatnonzero(groups >= 4)
    seen = set()

    def fit_predict(candidate, tr, te):
        seen.update(tr.tolist())
        seen.update(te.tolist())
        return s[te]

    sel = select_model(y, groups, ["only"], fit_predict, rows=rows, folds=3)
    assert seen == set(rows.tolist())
    np.testing.assert_array_equal(sel.thresholds, best_f1_thresholds(y[rows], s[rows]))
    assert sel.candidate == "only" and sel.oof["only"].shape == (len(rows), 2)


def test_fit_features_head_learns_a_separable_set():
    """The in-memory AUFeaturesTask fit used by the nested CV (mirrored rows, NaN labels masked)."""
    pytest.importorskip("lightning")
    import torch

    from mien.tasks.au.fit import HeadRecipe, fit_features_head

    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 6)).astype(np.float32)
    y = np.stack([x[:, 0] > 0, x[:, 1] + x[:, 2] > 0], 1).astype(np.float32)
    y[0, 1] = np.nan
    head = fit_features_head(x, y, ["AU01", "AU12"], mirrored=x, recipe=HeadRecipe(hidden=0, dropout=0.0, epochs=80,
                                                                                      lr=5e-2), seed=0)
    p = head.predict_proba(torch.from_numpy(x)).numpy()
    ok = np.isfinite(y)
    assert ((p >= 0.5) == (y == 1))[ok].mean() > 0.95
