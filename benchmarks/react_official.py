"""Reference copy of the OFFICIAL REACT 2023/2024 metric formulas, in the official code's style, for checking
and timing :mod:`mien.metrics.react`.

Written from the definitions in the project's seed digest (§4.6), not copied: per-speaker Python loops, a
``multiprocessing.Pool`` over speakers (2 workers by default, as the official evaluation runs them), per-pair
CCC with one ``np.cov`` per dimension, per-pair DTW with ``tslearn.metrics.dtw`` when tslearn is installed
(the official dependency) or else a plain dynamic programme, per-lag per-dimension ``np.corrcoef`` for FRSyn
with the official quirks (sum over the reactions, first reaction only in FRSyn, NaN → first index). Slow by
design: it is the baseline of ``benchmarks/react_metrics.py`` and the oracle of ``tests/test_react_metrics.py``.
"""

from __future__ import annotations

import warnings
from functools import partial

import numpy as np

SLICES = ((0, 15, 1 / 15), (15, 17, 1.0), (17, 25, 1 / 8))


def dtw_plain(x: np.ndarray, y: np.ndarray) -> float:
    """sqrt(min over warping paths Σ ||x_a − y_b||²), no band: the textbook DP, one cell at a time."""
    cost = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    acc = np.full((len(x) + 1, len(y) + 1), np.inf)
    acc[0, 0] = 0.0
    for a in range(len(x)):
        for b in range(len(y)):
            acc[a + 1, b + 1] = cost[a, b] + min(acc[a, b], acc[a, b + 1], acc[a + 1, b])
    return float(np.sqrt(acc[-1, -1]))


def dtw(x: np.ndarray, y: np.ndarray) -> float:
    try:
        from tslearn.metrics import dtw as ts_dtw
    except ImportError:
        return dtw_plain(x, y)
    return float(ts_dtw(x, y))


def ccc_one(gt: np.ndarray, pr: np.ndarray) -> float:
    """CCC of two (T, D) sequences: per dimension from np.cov, then the mean."""
    out = []
    for c in range(gt.shape[1]):
        x, y = gt[:, c], pr[:, c]
        cov = np.cov(x, y)
        with np.errstate(divide="ignore", invalid="ignore"):
            rho = cov[0, 1] / np.sqrt(cov[0, 0] * cov[1, 1])
        rho = np.clip(np.nan_to_num(rho), -1.0, 1.0)
        num = 2 * rho * np.std(x) * np.std(y)
        den = np.var(x) + np.var(y) + (np.mean(x) - np.mean(y)) ** 2 + 1e-8
        out.append(num / den)
    return float(np.mean(out))


def _frc_one(k, pred, listener, appropriate):
    neigh = np.argwhere(appropriate[k] == 1).reshape(-1)
    total = 0.0
    for i in range(pred.shape[1]):
        total += max(ccc_one(listener[j], pred[k, i]) for j in neigh)
    return total


def _frd_one(k, pred, listener, appropriate):
    neigh = np.argwhere(appropriate[k] == 1).reshape(-1)
    total = 0.0
    for i in range(pred.shape[1]):
        dists = []
        for j in neigh:
            res = 0.0
            for st, ed, w in SLICES:
                res += w * dtw(pred[k, i][:, st:ed], listener[j][:, st:ed])
            dists.append(res)
        total += min(dists)
    return total


def _tlcc_one(k, pred, speaker, max_lag=49):
    for i in range(pred.shape[1]):
        x, y = pred[k, i], speaker[k]
        rs = []
        for lag in range(-max_lag, max_lag + 1):
            if lag > 0:
                a, b = x[lag:], y[:-lag]
            elif lag < 0:
                a, b = x[:lag], y[-lag:]
            else:
                a, b = x, y
            with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
                warnings.simplefilter("ignore", RuntimeWarning)
                rs.append(np.mean([np.corrcoef(a[:, c], b[:, c])[0, 1] for c in range(x.shape[1])]))
        idx = int(np.argmax(np.asarray(rs)))  # NaN is the maximum, first occurrence — as torch.argmax
        return abs(max_lag - idx)  # returns inside the loop: only the first reaction counts


_SHARED: dict = {}  # the arrays, inherited by forked workers instead of pickled per task


def _call(fn, k):
    return fn(k, **_SHARED)


def _pool_map(fn, speakers, workers, **arrays):
    _SHARED.clear()
    _SHARED.update(arrays)
    try:
        if workers <= 1:
            return [fn(k, **arrays) for k in speakers]
        import multiprocessing as mp

        with mp.get_context("fork").Pool(workers) as pool:
            return pool.map(partial(_call, fn), speakers)
    finally:
        _SHARED.clear()


def _speakers(pred, speakers):
    return list(range(len(pred))) if speakers is None else list(speakers)


def frcorr(pred, listener, appropriate, workers=2, speakers=None):
    """Official FRCorr; ``speakers``: evaluate (and average over) only these speaker indices (for timing)."""
    ks = _speakers(pred, speakers)
    vals = _pool_map(_frc_one, ks, workers, pred=pred, listener=listener, appropriate=appropriate)
    return float(np.sum(vals) / len(ks))


def frdist(pred, listener, appropriate, workers=2, speakers=None):
    ks = _speakers(pred, speakers)
    vals = _pool_map(_frd_one, ks, workers, pred=pred, listener=listener, appropriate=appropriate)
    return float(np.sum(vals) / len(ks))


def frsyn(pred, speaker, workers=2, max_lag=49, speakers=None):
    ks = _speakers(pred, speakers)
    return float(np.mean(_pool_map(partial(_tlcc_one, max_lag=max_lag), ks, workers, pred=pred,
                                   speaker=speaker)))


def frdiv(pred):
    n, r, t, d = pred.shape
    total = 0.0
    for k in range(n):
        flat = pred[k].reshape(r, -1)
        sq = (flat ** 2).sum(1)
        dist = sq[:, None] + sq[None, :] - 2 * flat @ flat.T  # squared cdist
        total += (dist.sum() - np.trace(dist)) / (r * (r - 1) * t * d)
    return float(total / n)


def frvar(pred):
    return float(np.var(pred, axis=2, ddof=1).mean())


def frdvs(pred):
    n, r, t, d = pred.shape
    total = 0.0
    for i in range(r):
        flat = pred[:, i].reshape(n, -1)
        sq = (flat ** 2).sum(1)
        dist = sq[:, None] + sq[None, :] - 2 * flat @ flat.T
        total += (dist.sum() - np.trace(dist)) / (n * (n - 1))
    return float(total / r / (t * d))


def react_metrics_official(pred, listener, speaker, appropriate, workers=2, max_lag=49):
    return {
        "FRCorr": frcorr(pred, listener, appropriate, workers),
        "FRDist": frdist(pred, listener, appropriate, workers),
        "FRDiv": frdiv(pred),
        "FRVar": frvar(pred),
        "FRDvs": frdvs(pred),
        "FRSyn": frsyn(pred, speaker, workers, max_lag),
    }
