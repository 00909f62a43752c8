"""REACT listener-reaction metrics: FRCorr, FRDist, FRDiv (S-MSE), FRVar, FRDvs, FRSyn, and sanity baselines.

Definitions: the REACT 2023/2024 Multiple Appropriate Facial Reaction Generation challenges (Song et al.,
"REACT2023: the first Multi-modal Multiple Appropriate Facial Reaction Generation Challenge", ACM MM 2023;
"REACT 2024", FG 2024), as the official ``metric/*.py`` compute them. Written from the definitions, not from
that code. Inputs (any real dtype; computed in float64):

- ``pred``: (N, R, T, 25) — R generated reactions per speaker clip; ``listener``/``speaker``: (N, T, 25) the
  real listener / speaker attributes; ``appropriate``: (N, N) bool, ``A[k, j]`` = the real listener reaction
  of clip j is appropriate for speaker k (the challenge's ``neighbour_emotion_*.npy``; every row needs ≥ 1).
- The 25 attributes, in the challenge's order: 15 AU occurrences [0:15] ({0,1} or [0,1]), valence and arousal
  [15:17] ([−1, 1]), 8 expression probabilities [17:25] (summing to 1).

Default (``corrected=False``) reproduces the official numbers, quirks included: FRCorr and FRDist are SUMS over
the R reactions (so FRCorr ∈ [−R, R]), FRSyn uses only the first reaction and takes offset ``max_lag`` (49)
at a lag where some dimension's window is constant (the official Pearson is NaN there and ``torch.argmax``
picks the first NaN). ``corrected=True``: FRCorr/FRDist are means over the reactions, FRSyn averages all R
reactions, and a constant window contributes Pearson 0 to the lag's mean instead of poisoning it (a
dimension that is constant at every lag then shifts every lag's score equally and cannot move the argmax).
FRDiv/FRVar/FRDvs are the same in both modes.

Speed: FRDist needs one DTW per appropriate (k, j) pair and reaction: :func:`mien.metrics.dtw.nearest_weighted_dtw`
runs them in generated numba kernels (bit-identical to ``tslearn.metrics.dtw``) that advance blocks of 16 or 8
reactions against one listener in SIMD lanes held in registers, in ``workers`` threads, with the 0/1 AUs
bit-packed (popcount costs, int16 lanes) and the expression DTW skipped where bounds prove the candidate is
not the minimum (exact). FRCorr and FRSyn are batched in numpy (FFT for the 99 lags) over ``workers``
threads. ``benchmarks/react_metrics.py`` (N=1000, R=10, T=750, 4 appropriate listeners per speaker, 2 shared
vCPUs): ~32× the official-style code in CPU time (FRDist ~28×, FRCorr ~60×, FRSyn ~65×). FRDist needs
``numba`` (the ``react`` extra); the rest needs numpy/scipy only.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from mien.metrics.dtw import dtw_multi, nearest_weighted_dtw, usable_workers

__all__ = [
    "AU_SLICE",
    "DTW_SLICES",
    "EXPRESSION_SLICE",
    "REACT_ATTRIBUTES",
    "REACT_AUS",
    "REACT_EXPRESSIONS",
    "VA_SLICE",
    "SYN_MAX_LAG",
    "ccc",
    "dtw_slices",
    "frcorr",
    "frdist",
    "frdiv",
    "frdvs",
    "frsyn",
    "frvar",
    "react_baselines",
    "react_metrics",
]

REACT_AUS = ("AU01", "AU02", "AU04", "AU06", "AU07", "AU09", "AU10", "AU12", "AU14", "AU15", "AU17", "AU23",
             "AU24", "AU25", "AU26")
"""The 15 AU occurrences of the REACT attributes (FACS names, the challenge's order)."""
REACT_EXPRESSIONS = ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt")
"""The 8 expression probabilities of the REACT attributes, in the challenge's order."""
REACT_ATTRIBUTES: tuple[str, ...] = (*REACT_AUS, "valence", "arousal", *REACT_EXPRESSIONS)
"""The 25 per-frame facial attributes of REACT 2023/2024 (columns of the official ``Emotion/*.csv``), in the
challenge's order: 15 AU occurrences [0:15], valence and arousal [15:17] in [−1, 1], 8 expression
probabilities [17:25] (as listed in Song et al., REACT2023, ACM MM 2023). The one definition of the layout: readers,
writers, models and plots use these names and the slices below."""
DIM = len(REACT_ATTRIBUTES)
AU_SLICE, VA_SLICE, EXPRESSION_SLICE = slice(0, 15), slice(15, 17), slice(17, 25)
#: (start, stop, weight) of the FRDist DTW terms: AUs, valence/arousal, expression probabilities
DTW_SLICES = ((AU_SLICE.start, AU_SLICE.stop, 1 / 15), (VA_SLICE.start, VA_SLICE.stop, 1.0),
              (EXPRESSION_SLICE.start, EXPRESSION_SLICE.stop, 1 / 8))
#: official FRSyn lag range: 2 s at 25 fps → lags −49…49
SYN_MAX_LAG = 49
_CHUNK = 16  # sequences per batched FRSyn step (FFT over the 99 lags)
_PASS = 2  # speakers per step of the one-pass metrics (FRDiv, FRVar, FRDvs): ~R·T·25 float64 each, in L2/L3


def _arr(x: Any, name: str, ndim: int) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    if a.ndim != ndim or a.shape[-1] != DIM or not np.issubdtype(a.dtype, np.number) or np.iscomplexobj(a):
        letters = "N, R, T, 25" if ndim == 4 else "N, T, 25"
        raise ValueError(f"{name} must be a real array of shape ({letters}), got {a.dtype} {a.shape}")
    a = a.astype(np.float64, copy=False)
    if not np.isfinite(a).all():
        raise ValueError(f"{name} {a.shape} contains NaN or inf")
    return a


def _pred(pred: Any) -> np.ndarray:
    p = _arr(pred, "pred", 4)
    if p.shape[2] < 2:
        raise ValueError(f"pred {p.shape} needs T >= 2 frames")
    return p


def _seqs(p: np.ndarray, x: Any, name: str) -> np.ndarray:
    a = _arr(x, name, 3)
    if a.shape != (p.shape[0], p.shape[2], DIM):
        raise ValueError(f"{name} {a.shape} must be (N, T, 25) = {(p.shape[0], p.shape[2], DIM)} to match pred {p.shape}")
    return a


def _appropriate(p: np.ndarray, a: Any) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    m = np.asarray(a)
    n = p.shape[0]
    if m.shape != (n, n):
        raise ValueError(f"appropriate {m.shape} must be (N, N) = {(n, n)} to match pred {p.shape}")
    if m.dtype != np.bool_:
        if not np.isin(m, (0, 1)).all():
            raise ValueError(f"appropriate {m.shape} must be bool or hold only 0/1, got dtype {m.dtype}")
        m = m.astype(bool)
    if not m.any(axis=1).all():
        raise ValueError(f"appropriate {m.shape}: rows {np.flatnonzero(~m.any(axis=1))[:10].tolist()} have no "
                         "appropriate listener")
    return m


# ----------------------------------------------------------------------------------------------- FRCorr
def ccc(x: Any, y: Any) -> np.ndarray:
    """Concordance correlation coefficient of sequences, as the official REACT code: per dimension,
    ``2ρσxσy / (σx² + σy² + (μx − μy)² + 1e-8)`` with Pearson ρ (0 where undefined, clipped to [−1, 1]) and
    population σ, then averaged over the last axis. ``x``, ``y``: (..., T, D), broadcastable; returns (...)
    in [−1, 1] (1 for identical non-constant sequences)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    mx, my = x.mean(-2, keepdims=True), y.mean(-2, keepdims=True)
    xc, yc = x - mx, y - my
    sxx, syy = (xc * xc).sum(-2), (yc * yc).sum(-2)
    return _ccc_from(np.einsum("...tc,...tc->...c", xc, yc), sxx, syy, mx[..., 0, :], my[..., 0, :], x.shape[-2])


def _ccc_from(sxy, sxx, syy, mx, my, t):
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = np.clip(np.nan_to_num(sxy / np.sqrt(sxx * syy)), -1.0, 1.0)
    vx, vy = sxx / t, syy / t
    return (2 * rho * np.sqrt(vx) * np.sqrt(vy) / (vx + vy + (mx - my) ** 2 + 1e-8)).mean(-1)


def frcorr(pred: Any, listener: Any, appropriate: Any, corrected: bool = False, workers: int | None = None) -> float:
    """FRCorr (appropriateness, higher is better): mean over speakers k of Σ_i max_{j: A[k,j]} CCC(L_j, P_{k,i})
    — a sum over the R reactions (range [−R, R]); ``corrected=True`` divides by R (range [−1, 1]).
    Shapes: pred (N, R, T, 25), listener (N, T, 25), appropriate (N, N). Raises ValueError on bad shapes.
    Speakers are split over ``workers`` threads (default: the usable cores)."""
    p = _pred(pred)
    return _frcorr(p, _seqs(p, listener, "listener"), _appropriate(p, appropriate), corrected, workers)


def _in_threads(fn, n: int, workers: int | None) -> list:
    """fn(range) over ``workers`` contiguous parts of range(n), in threads (numpy releases the GIL); results in
    order."""
    w = max(1, min(usable_workers(workers), n))
    parts = [range(n * i // w, n * (i + 1) // w) for i in range(w)]
    if w == 1:
        return [fn(parts[0])]
    with ThreadPoolExecutor(w) as ex:
        return list(ex.map(fn, parts))


def _frcorr(p: np.ndarray, lst: np.ndarray, a: np.ndarray, corrected: bool, workers: int | None = None) -> float:
    t = p.shape[2]
    ml = lst.mean(1)  # (N, D)
    lc = lst - ml[:, None]
    sll = (lc * lc).sum(1)
    per_k = np.empty(p.shape[0])

    def part(ks: range) -> None:
        for k in ks:
            js = np.flatnonzero(a[k])
            mp = p[k].mean(1)  # (R, D)
            pc = p[k] - mp[:, None]
            sxy = np.einsum("itc,jtc->ijc", pc, lc[js])  # (R, J, D)
            c = _ccc_from(sxy, (pc * pc).sum(1)[:, None], sll[js][None], mp[:, None], ml[js][None], t)
            best = c.max(1)
            per_k[k] = best.mean() if corrected else best.sum()

    _in_threads(part, p.shape[0], workers)
    total = 0.0
    for v in per_k.tolist():  # summed in speaker order, as before the split
        total += v
    return float(total / p.shape[0])


# ----------------------------------------------------------------------------------------------- FRDist
def dtw_slices(x: Any, y: Any) -> np.ndarray:
    """DTW of one pair of (T, 25) sequences on the AU [0:15], VA [15:17] and expression [17:25] slices: (3,)
    float64, each ``sqrt(min over warping paths Σ ||x_a − y_b||²)`` (``tslearn.metrics.dtw``, no band)."""
    return dtw_multi(x, y, tuple((lo, hi) for lo, hi, _ in DTW_SLICES))


def frdist(pred: Any, listener: Any, appropriate: Any, corrected: bool = False, workers: int | None = None,
           lanes: int = 64) -> float:
    """FRDist (distance to the closest appropriate real reaction, lower is better): mean over speakers k of
    Σ_i min_{j: A[k,j]} Σ_s w_s DTW(P_{k,i}[:, s], L_j[:, s]) with the slices/weights of :data:`DTW_SLICES`
    (1/15, 1, 1/8) — a sum over the R reactions; ``corrected=True`` divides by R.

    Only pairs with A[k, j] are computed, by :func:`mien.metrics.dtw.nearest_weighted_dtw` (exact minimum;
    the expression DTW skipped where bounds prove a candidate is not the minimum; 0/1 AUs bit-packed), up to
    ``lanes`` reactions per kernel call (blocks of 16 or 8 against one listener), in ``workers`` threads
    (default: the usable cores). Shapes as :func:`frcorr`; needs numba."""
    p = _pred(pred)
    return _frdist(p, _seqs(p, listener, "listener"), _appropriate(p, appropriate), corrected, workers, lanes)


def _same_reaction(p: np.ndarray) -> np.ndarray:
    """(N, R) int: for each reaction, the index of the first reaction of the same speaker equal to it (itself
    when none) — copies share their candidates, so FRDist computes them once. Keyed by the sum of every 7th
    frame (one vectorised pass), then confirmed in full."""
    n, r = p.shape[:2]
    src = np.tile(np.arange(r), (n, 1))
    keys = p[:, :, ::7].sum(axis=(2, 3)).tolist()  # equal reactions have equal keys; others rarely do
    for k in range(n):
        seen: dict[float, list[int]] = {}
        for i in range(r):
            key = keys[k][i]
            same = [i2 for i2 in seen.get(key, ()) if np.array_equal(p[k, i], p[k, i2])]
            if same:
                src[k, i] = same[0]
            else:
                seen.setdefault(key, []).append(i)
    return src


def _frdist(p: np.ndarray, lst: np.ndarray, a: np.ndarray, corrected: bool, workers: int | None,
            lanes: int = 64) -> float:
    n, r, t, _ = p.shape
    src = _same_reaction(p)
    ks, js = np.nonzero(a)
    cand_q = (np.repeat(ks * r, r) + np.tile(np.arange(r), len(ks)))  # query k·R + i, candidate listener j
    cand_j = np.repeat(js, r)
    own = (src.reshape(-1) == np.tile(np.arange(r), n))[cand_q]  # distinct reactions only
    best = nearest_weighted_dtw(p.reshape(n * r, t, DIM), lst, cand_q[own], cand_j[own], DTW_SLICES, workers,
                                lanes).reshape(n, r)
    best = np.take_along_axis(best, src, axis=1)  # copies take their original's value
    per_k = best.mean(1) if corrected else best.sum(1)
    return float(per_k.mean())


# ---------------------------------------------------------------------------------- FRDiv, FRVar, FRDvs
def frdiv(pred: Any) -> float:
    """FRDiv (S-MSE, diversity among one speaker's reactions, higher is more diverse): mean over k of
    Σ_{i≠j} ||P_{k,i} − P_{k,j}||² / (R(R−1)·T·25). pred (N, R, T, 25); NaN when R < 2."""
    return _frdiv(_pred(pred))


def _frdiv(p: np.ndarray) -> float:
    n, r, t, d = p.shape
    if r < 2:
        return float("nan")
    total = 0.0  # Σ_{i≠j}||Pi − Pj||² = 2R Σ_i ||Pi − P̄||², in chunks of speakers to bound memory
    for c in range(0, n, _PASS):
        dev = (p[c:c + _PASS] - p[c:c + _PASS].mean(1, keepdims=True)).ravel()
        total += dev @ dev
    return float(2 * r * total / (r * (r - 1) * t * d) / n)


def frvar(pred: Any) -> float:
    """FRVar (variation over time, higher is more variable): mean over (k, i, c) of the unbiased variance of
    P_{k,i,:,c} over the T frames. pred (N, R, T, 25)."""
    return _frvar(_pred(pred))


def _frvar(p: np.ndarray) -> float:
    total = 0.0  # Σ over (k, i, c) of Σ_t (x − x̄)², then / (T − 1): np.var(ddof=1) in fewer passes
    for c in range(0, len(p), _PASS):
        part = p[c:c + _PASS]
        dev = (part - part.mean(2, keepdims=True)).ravel()
        total += dev @ dev
    return float(total / (p.shape[2] - 1) / (p.size / p.shape[2]))


def frdvs(pred: Any) -> float:
    """FRDvs (diversity across speakers, higher is more diverse): Σ_i Σ_{a≠b} ||P_{a,i} − P_{b,i}||² /
    (N(N−1)·R·T·25). pred (N, R, T, 25); NaN when N < 2."""
    return _frdvs(_pred(pred))


def _frdvs(p: np.ndarray) -> float:
    n, r, t, d = p.shape
    if n < 2:
        return float("nan")
    mean = p.mean(0)
    total = 0.0
    for c in range(0, n, _PASS):
        dev = (p[c:c + _PASS] - mean).ravel()
        total += dev @ dev
    return float(2 * n * total / (n * (n - 1) * r * t * d))


# ----------------------------------------------------------------------------------------------- FRSyn
def _first_change(x: np.ndarray) -> np.ndarray:
    """(M, T, D) → (M, D): number of leading frames equal to frame 0 (T when constant)."""
    diff = x != x[:, :1]
    return np.where(diff.any(1), diff.argmax(1), x.shape[1])


def _const_windows(z: np.ndarray, start: np.ndarray, stop: np.ndarray, prefix: np.ndarray):
    """Windows z[:, start:stop] (prefixes where ``prefix``, else suffixes) per lag: (M, L, D) bool constant, and
    the sign of (value − numpy's mean of the window) for those: np.corrcoef centres a constant window to exact
    zeros (→ NaN) only when numpy's pairwise-summed mean reproduces the value; otherwise to a tiny δ."""
    t = z.shape[1]
    lead, trail = _first_change(z), _first_change(z[:, ::-1])
    const = np.where(prefix[None, :, None], stop[None, :, None] <= lead[:, None],
                     start[None, :, None] >= t - trail[:, None])
    value = np.where(prefix[None, :, None], z[:, :1], z[:, -1:])
    m_i, l_i, d_i = np.nonzero(const)
    sign = np.zeros(const.shape)
    if len(m_i):
        v, n = value[m_i, 0, d_i], (stop - start)[l_i]
        pairs, inv = np.unique(np.stack([v, n]), axis=1, return_inverse=True)
        means = np.array([np.full(int(nn), vv).sum() / nn for vv, nn in pairs.T])
        sign[m_i, l_i, d_i] = np.sign(pairs[0] - means)[inv.reshape(-1)]
    return const, sign


def _lag_pearson(x: np.ndarray, y: np.ndarray, max_lag: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pearson r of x and y shifted by lag ℓ = −max_lag…max_lag (ℓ > 0: x[ℓ:] vs y[:−ℓ]; ℓ < 0: x[:ℓ] vs
    y[−ℓ:]), per sequence and dimension, as np.corrcoef gives it: (M, 2·max_lag+1, D) r in [−1, 1]; a bool of
    the same shape where np.corrcoef returns NaN (a window that is constant with an exactly reproduced mean;
    r is 0 there); and a bool marking every window pair with a constant side. Sums by prefix sums and one FFT
    cross-correlation."""
    from scipy import fft

    m, t, d = x.shape
    lags = np.arange(-max_lag, max_lag + 1)
    xs, xe = np.maximum(lags, 0), t - np.maximum(-lags, 0)  # x window [ℓ⁺, T − ℓ⁻)
    ys, ye = np.maximum(-lags, 0), t - np.maximum(lags, 0)  # y window [ℓ⁻, T − ℓ⁺)
    const_x, sx_sign = _const_windows(x, xs, xe, lags < 0)
    const_y, sy_sign = _const_windows(y, ys, ye, lags >= 0)
    x = x - x.mean(1, keepdims=True)
    y = y - y.mean(1, keepdims=True)
    nfft = fft.next_fast_len(2 * t)
    cc = fft.irfft(fft.rfft(x, nfft, axis=1) * np.conj(fft.rfft(y, nfft, axis=1)), nfft, axis=1)
    sxy = cc[:, lags % nfft]  # Σ_t x[t+ℓ] y[t]
    zero = np.zeros((m, 1, d))
    cx, cx2 = np.concatenate([zero, x.cumsum(1)], 1), np.concatenate([zero, (x * x).cumsum(1)], 1)
    cy, cy2 = np.concatenate([zero, y.cumsum(1)], 1), np.concatenate([zero, (y * y).cumsum(1)], 1)
    nw = (t - np.abs(lags))[None, :, None]
    sx, sx2 = cx[:, xe] - cx[:, xs], cx2[:, xe] - cx2[:, xs]
    sy, sy2 = cy[:, ye] - cy[:, ys], cy2[:, ye] - cy2[:, ys]
    cov = sxy - sx * sy / nw
    vx, vy = sx2 - sx * sx / nw, sy2 - sy * sy / nw
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.clip(np.nan_to_num(cov / np.sqrt(np.maximum(vx, 0) * np.maximum(vy, 0))), -1.0, 1.0)
    nan = (const_x & (sx_sign == 0)) | (const_y & (sy_sign == 0))
    # a constant window centred to δ ≠ 0: r = δx·Σ(y − ȳ)/… ≈ 0, or ±1 when both windows are such
    r = np.where(const_x | const_y, sx_sign * sy_sign, r)
    const = const_x | const_y
    return np.where(nan, 0.0, r), nan, const


def frsyn(pred: Any, speaker: Any, corrected: bool = False, max_lag: int = SYN_MAX_LAG,
          workers: int | None = None) -> float:
    """FRSyn (time-lagged cross-correlation synchrony with the speaker, in frames, lower is better): for each
    reaction, r(ℓ) = mean over the 25 dimensions of Pearson(prediction, speaker) at lag ℓ ∈ [−max_lag,
    max_lag]; the offset is |ℓ*| at the first maximum; FRSyn = its mean, in [0, max_lag].

    Official (default): only the first reaction P_{k,0} is used, and a lag where any dimension's window is
    constant has r = NaN, which the official ``torch.argmax`` picks first (offset 49 for a constant
    dimension). ``corrected=True``: all R reactions, constant windows count as Pearson 0.
    pred (N, R, T, 25), speaker (N, T, 25) with T > max_lag + 1; chunks of sequences run in ``workers`` threads
    (default: the usable cores)."""
    p = _pred(pred)
    return _frsyn(p, _seqs(p, speaker, "speaker"), corrected, max_lag, workers)


def _frsyn(p: np.ndarray, s: np.ndarray, corrected: bool, max_lag: int, workers: int | None = None) -> float:
    n, r, t, d = p.shape
    if t < max_lag + 2:
        raise ValueError(f"FRSyn with max_lag={max_lag} needs T >= {max_lag + 2} frames, got pred {p.shape}")
    x = p.reshape(n * r, t, d) if corrected else p[:, 0]
    spk_of = np.repeat(np.arange(n), r) if corrected else np.arange(n)

    def part(chunks: range) -> list:
        offsets = []
        for i in chunks:
            c = i * _CHUNK
            rr, nan, const = _lag_pearson(x[c:c + _CHUNK], s[spk_of[c:c + _CHUNK]], max_lag)
            if corrected:
                rr = np.where(const, 0.0, rr)
            idx = rr.mean(2).argmax(1)  # first maximum over lags
            if not corrected:
                nan_lag = nan.any(2)
                idx = np.where(nan_lag.any(1), nan_lag.argmax(1), idx)
            offsets.append(np.abs(max_lag - idx))
        return offsets

    offsets = [o for chunk in _in_threads(part, -(-len(x) // _CHUNK), workers) for o in chunk]
    return float(np.concatenate(offsets).mean())


# --------------------------------------------------------------------------------------------- suite
def react_metrics(pred: Any, listener: Any, speaker: Any, appropriate: Any, corrected: bool = False,
                  workers: int | None = None, max_lag: int = SYN_MAX_LAG) -> dict[str, float]:
    """All six REACT metrics: ``{"FRCorr", "FRDist", "FRDiv", "FRVar", "FRDvs", "FRSyn"}`` (floats).

    pred (N, R, T, 25) generated reactions; listener, speaker (N, T, 25) real attributes; appropriate (N, N)
    bool. Better is higher for FRCorr, FRDiv, FRVar, FRDvs and lower for FRDist, FRSyn. ``corrected`` and the
    ranges: see the module docstring and each function. Raises ValueError naming the argument on bad shapes,
    dtypes, non-finite values or an appropriateness matrix of the wrong size or with an empty row."""
    p = _pred(pred)
    lst, spk = _seqs(p, listener, "listener"), _seqs(p, speaker, "speaker")
    a = _appropriate(p, appropriate)
    if p.shape[2] < max_lag + 2:  # before the expensive metrics
        raise ValueError(f"FRSyn with max_lag={max_lag} needs T >= {max_lag + 2} frames, got pred {p.shape}")
    return {
        "FRCorr": _frcorr(p, lst, a, corrected, workers),
        "FRDist": _frdist(p, lst, a, corrected, workers),
        "FRDiv": _frdiv(p),
        "FRVar": _frvar(p),
        "FRDvs": _frdvs(p),
        "FRSyn": _frsyn(p, spk, corrected, max_lag, workers),
    }


def react_baselines(speaker: Any, listener: Any, train_speaker: Any, train_listener: Any, appropriate: Any,
                    R: int = 10, seed: int = 0) -> dict[str, np.ndarray]:  # noqa: N803 - R as in the challenge
    """Standard sanity baselines as predictions (N, R, T, 25) float64, to score with :func:`react_metrics`.

    - ``random_train``: R real listener sequences drawn at random (seeded, with replacement) from the training
      set, independently of the speaker.
    - ``mirror``: the speaker's own attributes, R identical copies (listener = speaker).
    - ``nearest_neighbour``: the training listeners of the R training speakers nearest to the test speaker by
      Euclidean distance of per-dimension mean and standard deviation over time (50-d).
    - ``appropriate_listener``: R draws from the real test listeners marked appropriate for the speaker — an
      oracle upper bound, not a method.
    speaker, listener: (N, T, 25); train_speaker, train_listener: (M, T, 25) with the same T; appropriate
    (N, N)."""
    spk = _arr(speaker, "speaker", 3)
    lst = _arr(listener, "listener", 3)
    tsp = _arr(train_speaker, "train_speaker", 3)
    tls = _arr(train_listener, "train_listener", 3)
    if lst.shape != spk.shape:
        raise ValueError(f"listener {lst.shape} must match speaker {spk.shape}")
    if tsp.shape != tls.shape or tsp.shape[1] != spk.shape[1]:
        raise ValueError(f"train_speaker {tsp.shape} and train_listener {tls.shape} must be (M, T, 25) with "
                         f"T = {spk.shape[1]} as speaker {spk.shape}")
    n = spk.shape[0]
    a = _appropriate(np.empty((n, 1, 1, DIM)), appropriate)
    rng = np.random.default_rng(seed)
    feats = lambda z: np.concatenate([z.mean(1), z.std(1)], 1)  # noqa: E731
    dist = ((feats(spk)[:, None] - feats(tsp)[None]) ** 2).sum(-1)
    nearest = np.argsort(dist, axis=1, kind="stable")[:, :R]
    nearest = nearest[:, np.arange(R) % nearest.shape[1]]  # fewer than R training clips: cycle
    pick = np.stack([rng.choice(np.flatnonzero(a[k]), R) for k in range(n)])
    return {
        "random_train": tls[rng.integers(0, len(tls), (n, R))],
        "mirror": np.repeat(spk[:, None], R, axis=1),
        "nearest_neighbour": tls[nearest],
        "appropriate_listener": lst[pick],
    }
