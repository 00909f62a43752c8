"""REACT metrics (mien.metrics.react): hand-computed values, the official quirks, equality with the
official-style reference (benchmarks/react_official.py) and input validation."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np
import pytest

from mien.metrics import dtw, react

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import react_official as official  # noqa: E402

pytest.importorskip("numba")


def synth(rng, lead, t):
    """Attributes in the REACT ranges: binary AUs, VA in [−1, 1], expression probabilities summing to 1."""
    au = (rng.random(lead + (t, 15)) < 0.3).astype(float)
    va = rng.uniform(-1, 1, lead + (t, 2))
    e = rng.random(lead + (t, 8))
    return np.concatenate([au, va, e / e.sum(-1, keepdims=True)], -1)


def varying(rng, lead, t):
    """Every dimension non-constant."""
    return rng.random(lead + (t, 25))


# ------------------------------------------------------------------------------------------------ CCC
def test_ccc_hand_value_and_identity():
    x = np.array([0.0, 1, 2, 3])[:, None]
    # ρ = 1, σx² = σy² = 1.25, (μx − μy)² = 1
    assert react.ccc(x, x + 1) == pytest.approx(2.5 / (3.5 + 1e-8), abs=1e-12)
    z = np.random.default_rng(0).random((30, 25))
    assert react.ccc(z, z) == pytest.approx(1.0, abs=1e-6)
    # a constant dimension contributes 0 (official nan_to_num), not NaN
    zc = z.copy()
    zc[:, 0] = 0.5
    assert react.ccc(zc, zc) == pytest.approx(24 / 25, abs=1e-6)
    assert react.ccc(z, zc) == pytest.approx(official.ccc_one(z, zc), abs=1e-12)


# ------------------------------------------------------------------------------------------------ DTW
def brute_force_dtw(x, y):
    """sqrt of the minimum over ALL monotone warping paths (enumerated) of Σ squared distances."""
    best = np.inf
    steps = [(1, 0), (0, 1), (1, 1)]
    for path_len in range(max(len(x), len(y)), len(x) + len(y)):
        for moves in itertools.product(steps, repeat=path_len - 1):
            a = b = 0
            cost = ((x[0] - y[0]) ** 2).sum()
            for da, db in moves:
                a, b = a + da, b + db
                if a >= len(x) or b >= len(y):
                    break
                cost += ((x[a] - y[b]) ** 2).sum()
            else:
                if (a, b) == (len(x) - 1, len(y) - 1):
                    best = min(best, cost)
    return np.sqrt(best)


def test_dtw_identity_brute_force_and_hand_values():
    rng = np.random.default_rng(1)
    x = rng.random((12, 25))
    assert np.all(react.dtw_slices(x, x) == 0)
    for tx, ty in [(3, 4), (4, 4), (5, 3)]:
        a, b = rng.random((tx, 25)), rng.random((ty, 25))
        want = [brute_force_dtw(a[:, lo:hi], b[:, lo:hi]) for lo, hi, _ in react.DTW_SLICES]
        np.testing.assert_allclose(react.dtw_slices(a, b), want, rtol=1e-12)
        np.testing.assert_allclose(want, [official.dtw_plain(a[:, lo:hi], b[:, lo:hi])
                                          for lo, hi, _ in react.DTW_SLICES], rtol=1e-12)
    # warping absorbs a repeated frame: [0,0,1] vs [0,1,1] → 0; multivariate: one frame (0,0) vs (3,4) → 5
    p, q = np.zeros((3, 25)), np.zeros((3, 25))
    p[2, 15], q[1:, 15] = 1, 1
    p[0, 17:19], q[0, 17:19] = 0, (3, 4)
    np.testing.assert_allclose(react.dtw_slices(p, q), [0, 0, 5])


@pytest.mark.slow  # tslearn's numba JIT takes ~10 s
def test_dtw_matches_tslearn_bitwise():
    tslearn = pytest.importorskip("tslearn.metrics")
    rng = np.random.default_rng(2)
    a, b = rng.random((30, 25)), rng.random((27, 25))
    want = [tslearn.dtw(a[:, lo:hi], b[:, lo:hi]) for lo, hi, _ in react.DTW_SLICES]
    assert react.dtw_slices(a, b).tolist() == want


def _weighted_pairwise(queries, refs, cand_q, cand_r):
    """Reference for nearest_weighted_dtw: every candidate with dtw_multi, summed as the official code."""
    out = np.full(len(queries), np.inf)
    for q, j in zip(cand_q, cand_r, strict=True):
        d = dtw.dtw_multi(queries[q], refs[j], [(lo, hi) for lo, hi, _ in react.DTW_SLICES])
        res = 0.0
        for (_, _, w), v in zip(react.DTW_SLICES, d, strict=True):
            res += w * v
        out[q] = min(out[q], res)
    return out


@pytest.mark.parametrize("binary_refs", [True, False])
def test_nearest_weighted_dtw_packed_and_float_paths_equal_pairwise_bitwise(binary_refs):
    rng = np.random.default_rng(9)
    queries, refs = synth(rng, (13,), 23), synth(rng, (5,), 19)  # different lengths; AUs are 0/1
    if not binary_refs:
        refs[2, 4, 3] = 0.5  # one non-binary AU value anywhere: the float path for everything
    assert (dtw._pack(refs, 0, 15) is not None) == binary_refs
    refs[3] = queries[4, :19]  # an exact match → 0
    cand_q = np.r_[np.arange(13), np.arange(13), [4, 4]]
    cand_r = np.r_[rng.integers(0, 5, 13), rng.integers(0, 5, 13), [3, 1]]
    want = _weighted_pairwise(queries, refs, cand_q, cand_r)
    for lanes, workers, prune in [(40, 2, True), (3, 1, True), (40, 1, False)]:  # lane groups, threads
        got = dtw.nearest_weighted_dtw(queries, refs, cand_q, cand_r, react.DTW_SLICES, workers, lanes, prune)
        assert got.tolist() == want.tolist()
    assert dtw.nearest_weighted_dtw(queries[4:5, :19], refs, [0], [3], react.DTW_SLICES)[0] == 0
    # the packed AU cost is the exact squared distance: a single frame differing in k AUs costs k
    x, y = np.zeros((1, 1, 25)), np.zeros((1, 1, 25))
    x[0, 0, [0, 3, 14]] = 1
    assert dtw.nearest_weighted_dtw(x, y, [0], [0], react.DTW_SLICES)[0] == np.sqrt(3) / 15


def test_packed_slice_alone_and_calls_mixing_references_equal_pairwise():
    """A lone 0/1 slice (no float slice: the kernel has only the popcount recursion), and kernel calls that hold
    several references' blocks, each padded to 16 or 8 lanes (the lanes of one reference keep its costs)."""
    rng = np.random.default_rng(12)
    queries, refs = synth(rng, (11,), 17), synth(rng, (7,), 17)
    cand_q, cand_r = np.repeat(np.arange(11), 3), rng.integers(0, 7, 33)
    au = ((0, 15, 1 / 15),)
    want = np.full(11, np.inf)
    for q, j in zip(cand_q, cand_r, strict=True):
        want[q] = min(want[q], dtw.dtw_multi(queries[q], refs[j], [(0, 15)])[0] / 15)
    for lanes, prune in [(40, True), (5, False), (16, True)]:
        got = dtw.nearest_weighted_dtw(queries, refs, cand_q, cand_r, au, 1, lanes, prune)
        assert got.tolist() == want.tolist()
    blocks = dtw._blocks(np.arange(33), cand_r)
    assert sorted(blocks) == [8, 16] and all(b.shape[1] == w for w, b in blocks.items())
    assert sorted(set(np.concatenate([b.reshape(-1) for b in blocks.values()]).tolist())) == list(range(33))
    assert all((cand_r[b] == cand_r[b[:, :1]]).all() for b in blocks.values())  # one reference per block
    assert sum(b.size for b in blocks.values()) - 33 < 8 * len(set(cand_r.tolist()))  # < 8 padded per reference
    assert dtw._widths(((15, 17),)) == dtw._widths(((17, 25),)) == (16, 8)  # VA (+ packed AUs), expression
    assert dtw._widths(((0, 15), (15, 17))) == (8,)  # non-binary AUs + VA: 16 lanes would spill registers
    assert list(dtw._blocks(np.arange(33), cand_r, (8,))) == [8]
    full = _weighted_pairwise(queries, refs, cand_q, cand_r)
    for lanes in (64, 16, 3):  # several blocks (references) per call, one per call
        got = dtw.nearest_weighted_dtw(queries, refs, cand_q, cand_r, react.DTW_SLICES, 2, lanes)
        assert got.tolist() == full.tolist()


def test_integer_au_path_equals_float_path_up_to_the_type_limit(monkeypatch):
    """0/1 AU slices run in int16 lanes while max(Tx, Ty) · bits < 32767 (every cell's total is at most one
    path's), int32 beyond, float64 past 31 bits; each gives the float path's value bit for bit, including
    totals at the int16 limit (all 15 AUs differing on every frame of the longest sequence)."""
    assert dtw._code_type(15, 750, 750) is np.int16 and dtw._code_type(15, 2184, 7) is np.int16  # 32,760
    assert dtw._code_type(15, 7, 2185) is np.int32 and dtw._code_type(16, 5, 5) is np.int32  # 32,775; 16 bits
    assert dtw._code_type(31, 5, 5) is np.int32 and dtw._code_type(32, 5, 5) is None
    seen = []
    real = dtw._kernel
    monkeypatch.setattr(dtw, "_kernel", lambda w, code_type, sl: seen.append(code_type) or real(w, code_type, sl))
    rng = np.random.default_rng(13)
    au = ((0, 15, 1.0),)
    for t, code_type in [(2184, np.int16), (2185, np.int32)]:
        ones, zeros = np.ones((1, t, 15)), np.zeros((1, 3, 15))
        seen.clear()
        got = dtw.nearest_weighted_dtw(ones, zeros, [0], [0], au)[0]
        assert seen == [code_type] and got == np.sqrt(15.0 * t) == dtw.dtw_multi(ones[0], zeros[0], [(0, 15)])[0]
        x, y = (rng.random((2, t, 15)) < 0.5).astype(float), (rng.random((3, t - 40, 15)) < 0.5).astype(float)
        got = dtw.nearest_weighted_dtw(x, y, [0, 1, 1], [2, 0, 1], au, prune=False)
        want = [dtw.dtw_multi(x[0], y[2], [(0, 15)])[0],
                min(dtw.dtw_multi(x[1], y[j], [(0, 15)])[0] for j in (0, 1))]
        assert got.tolist() == want
    wide = np.zeros((1, 4, 33))
    wide[0, 1, :32] = 1
    seen.clear()
    got = dtw.nearest_weighted_dtw(wide, np.zeros((1, 4, 33)), [0], [0], ((0, 32, 1.0), (32, 33, 1.0)))[0]
    assert seen == [None] and got == np.sqrt(32.0)  # 32 AUs: float path


def test_pruning_completes_every_candidate_that_can_be_the_minimum():
    """Adversarial: the candidate with the lowest bound (AU + VA terms, expression deferred) is not the
    minimum; ties between candidates and between a bound and the best value."""
    rng = np.random.default_rng(10)
    x = synth(rng, (1,), 30)
    a_ref, b_ref = x[0].copy(), x[0].copy()
    a_ref[:, 17:] = np.roll(a_ref[:, 17:], 3, axis=1)  # same AUs/VA (bound 0), far expression
    b_ref[:, 15] += 0.01  # VA slightly off (bound > 0), same expression: the minimum
    c_ref = x[0].copy()
    c_ref[:, 17:] = b_ref[:, 17:]
    c_ref[:, 15] = a_ref[:, 15] + 0.01  # = b_ref: a tie with the minimum
    refs = np.stack([a_ref, b_ref, c_ref, a_ref])
    cand_q, cand_r = np.zeros(4, int), np.arange(4)
    want = _weighted_pairwise(x, refs, cand_q, cand_r)
    full = dtw.nearest_weighted_dtw(x, refs, cand_q, cand_r, react.DTW_SLICES, prune=False)
    assert want[0] == full[0] == dtw.nearest_weighted_dtw(x, refs, cand_q, cand_r, react.DTW_SLICES)[0]
    assert want[0] == _weighted_pairwise(x, refs[1:2], [0], [0])[0] > 0  # b_ref is the minimum
    # random sets with many candidates per query and duplicated references
    queries, refs = synth(rng, (9,), 25), synth(rng, (6,), 25)
    refs[5] = refs[2]
    cand_q, cand_r = np.repeat(np.arange(9), 6), np.tile(np.arange(6), 9)
    pruned = dtw.nearest_weighted_dtw(queries, refs, cand_q, cand_r, react.DTW_SLICES, lanes=4)
    assert pruned.tolist() == _weighted_pairwise(queries, refs, cand_q, cand_r).tolist()


def test_frdist_computes_identical_reactions_once_with_the_same_value(monkeypatch):
    rng = np.random.default_rng(11)
    n, r, t = 3, 4, 20
    pred, lst = synth(rng, (n, r), t), synth(rng, (n,), t)
    pred[0, 2] = pred[0, 0]
    pred[1] = pred[1, 3]  # mirror-like: all copies
    pred[2, 1, 5, 16] = np.nextafter(pred[2, 0, 5, 16], 1)  # differs from reaction 0 by one ulp, off the key
    pred[2, 1, :5], pred[2, 1, 6:], pred[2, 1, 5, :16], pred[2, 1, 5, 17:] = (
        pred[2, 0, :5], pred[2, 0, 6:], pred[2, 0, 5, :16], pred[2, 0, 5, 17:])
    assert react._same_reaction(pred).tolist() == [[0, 1, 0, 3], [0, 0, 0, 0], [0, 1, 2, 3]]
    a = np.ones((n, n), bool)
    seen = []
    real = dtw.nearest_weighted_dtw
    monkeypatch.setattr(react, "nearest_weighted_dtw", lambda *args: seen.append(len(args[2])) or real(*args))
    fast = react.frdist(pred, lst, a)
    assert seen == [n * (r - 1 + 1 + r)]  # 3 + 1 + 4 distinct reactions, each against the 3 listeners
    ks, js = np.nonzero(a)
    cand_q = np.repeat(ks * r, r) + np.tile(np.arange(r), len(ks))
    full = _weighted_pairwise(pred.reshape(n * r, t, 25), lst, cand_q, np.repeat(js, r)).reshape(n, r)
    assert fast == float(full.sum(1).mean())


# ------------------------------------------------------------------------------------ hand-computed suite
def test_frcorr_frdist_are_sums_over_reactions():
    rng = np.random.default_rng(3)
    n, r, t = 2, 3, 8
    lst = varying(rng, (n,), t)
    pred = np.repeat(lst[:, None], r, 1)  # every reaction equals the speaker's own listener
    a = np.eye(n, dtype=bool)
    assert react.frcorr(pred, lst, a) == pytest.approx(r, abs=1e-6)  # official: sum of R CCCs of 1
    assert react.frcorr(pred, lst, a, corrected=True) == pytest.approx(1, abs=1e-6)
    assert react.frdist(pred, lst, a) == 0
    # constant listener; prediction off by 0.5 on both VA dims → every cell costs 0.5, DTW = sqrt(0.5·T) = 2
    lst = np.zeros((n, t, 25))
    pred = np.zeros((n, r, t, 25))
    pred[..., 15:17] = 0.5
    far = lst.copy()
    far[1, :, 15:17] = -3  # listener 1 is far; appropriate for speaker 0 too, but the min ignores it
    a = np.array([[True, True], [False, True]])
    assert react.frdist(pred, far, a) == pytest.approx(np.mean([r * 2, r * np.sqrt(t * 2 * 3.5 ** 2)]))
    assert react.frdist(pred, lst, a) == pytest.approx(r * 2)
    assert react.frdist(pred, lst, a, corrected=True) == pytest.approx(2)


def test_frdiv_frvar_frdvs_hand_values():
    t = 4
    pred = np.zeros((2, 2, t, 25))
    pred[:, 1] = 1  # reactions 0 and 1 differ by 1 everywhere
    assert react.frdiv(pred) == pytest.approx(1)
    assert react.frvar(pred) == 0
    assert react.frdvs(pred) == 0  # both speakers got the same reactions
    pred = np.zeros((2, 3, t, 25))
    pred[1] = 1
    pred[0, :, 1::2] = 1  # 0,1,0,1 → unbiased variance 1/3
    assert react.frvar(pred) == pytest.approx(1 / 6)
    assert react.frdvs(pred) == pytest.approx(0.5)  # half the frames differ by 1 between the two speakers
    assert np.isnan(react.frdiv(pred[:, :1]))


def shifted(speaker, lag):
    """pred[t] = speaker[t − lag] (fresh noise where undefined)."""
    out = np.random.default_rng(lag).random(speaker.shape)
    out[lag:] = speaker[:len(speaker) - lag]
    return out


def test_frsyn_first_reaction_only_and_constant_dimension():
    rng = np.random.default_rng(4)
    t = 150
    spk = rng.random((1, t, 25))
    pred = np.stack([shifted(spk[0], 5), shifted(spk[0], 20)])[None]  # (1, 2, T, 25)
    assert react.frsyn(pred, spk) == 5  # official: only the first reaction
    assert react.frsyn(pred, spk, corrected=True) == 12.5  # all reactions
    const = pred.copy()
    const[0, :, :, 3] = 0.0  # an AU that never fires: np.corrcoef NaN at every lag → argmax 0 → 49
    assert react.frsyn(const, spk) == 49
    assert react.frsyn(const, spk, corrected=True) == 12.5  # contributes 0 at every lag: argmax unchanged
    assert official.frsyn(const, spk, workers=1) == 49


# --------------------------------------------------------------------------------- fast == official
@pytest.fixture
def plain_dtw(monkeypatch):
    monkeypatch.setattr(official, "dtw", official.dtw_plain)  # no tslearn JIT in the unit tests


@pytest.mark.parametrize("seed", [0, 1])
def test_fast_equals_official_reference(seed, plain_dtw):
    rng = np.random.default_rng(seed)
    n, r, t, lag = 6, 3, 40, 10
    pred, lst, spk = synth(rng, (n, r), t), synth(rng, (n,), t), synth(rng, (n,), t)
    pred[0, 0, :, 2] = 0.0  # constant with exact mean → NaN lags
    pred[1, 0, :, 20] = 0.1  # constant with (possibly) inexact numpy mean
    spk[1, :, 21] = 0.3
    pred[1, 0, :, 21] = 0.7  # both constant
    spk[2, :32, 16] = 0.25  # speaker prefix constant: NaN at lags 8…10 only
    pred[3] = np.repeat(pred[3, :1], r, 0)  # identical reactions
    a = rng.random((n, n)) < 0.4
    np.fill_diagonal(a, True)
    fast = react.react_metrics(pred, lst, spk, a, workers=2, max_lag=lag)
    ref = official.react_metrics_official(pred, lst, spk, a, workers=1, max_lag=lag)
    for k in ref:
        assert fast[k] == pytest.approx(ref[k], rel=1e-10, abs=1e-12), k
    corr = react.react_metrics(pred, lst, spk, a, corrected=True, max_lag=lag)
    assert corr["FRCorr"] == pytest.approx(fast["FRCorr"] / r, rel=1e-12)
    assert corr["FRDist"] == pytest.approx(fast["FRDist"] / r, rel=1e-12)
    for k in ("FRDiv", "FRVar", "FRDvs"):
        assert corr[k] == fast[k]


def test_frsyn_corrected_equals_official_for_one_reaction_without_constant_windows():
    rng = np.random.default_rng(5)
    pred, spk = varying(rng, (5, 1), 60), varying(rng, (5,), 60)
    assert react.frsyn(pred, spk, corrected=True, max_lag=12) == react.frsyn(pred, spk, max_lag=12)
    assert react.frsyn(pred, spk, max_lag=12) == official.frsyn(pred, spk, workers=1, max_lag=12)


# ------------------------------------------------------------------------------------------ baselines
def test_baselines_shapes_and_definitions():
    rng = np.random.default_rng(6)
    n, m, t, r = 4, 7, 20, 5
    spk, lst = synth(rng, (n,), t), synth(rng, (n,), t)
    tsp, tls = synth(rng, (m,), t), synth(rng, (m,), t)
    tsp[2] = spk[1]
    a = np.eye(n, dtype=bool)
    out = react.react_baselines(spk, lst, tsp, tls, a, R=r, seed=0)
    assert set(out) == {"random_train", "mirror", "nearest_neighbour", "appropriate_listener"}
    for v in out.values():
        assert v.shape == (n, r, t, 25)
    assert (out["mirror"] == spk[:, None]).all()
    assert (out["nearest_neighbour"][1, 0] == tls[2]).all()
    assert (out["appropriate_listener"] == lst[:, None]).all()
    assert all(any((row == x).all() for x in tls) for row in out["random_train"].reshape(-1, t, 25))
    metrics = react.react_metrics(out["mirror"], lst, spk, a, max_lag=5)
    assert set(metrics) == {"FRCorr", "FRDist", "FRDiv", "FRVar", "FRDvs", "FRSyn"}


# ------------------------------------------------------------------------------------------ validation
def test_bad_inputs_raise_value_error():
    rng = np.random.default_rng(7)
    pred, lst, spk = synth(rng, (3, 2), 60), synth(rng, (3,), 60), synth(rng, (3,), 60)
    a = np.eye(3, dtype=bool)
    with pytest.raises(ValueError, match=r"pred must be .*\(N, R, T, 25\).*\(3, 60, 25\)"):
        react.react_metrics(pred[:, 0], lst, spk, a)
    with pytest.raises(ValueError, match=r"listener \(3, 50, 25\) must be \(N, T, 25\) = \(3, 60, 25\)"):
        react.react_metrics(pred, lst[:, :50], spk, a)
    with pytest.raises(ValueError, match=r"speaker must be .*\(3, 60, 24\)"):
        react.react_metrics(pred, lst, spk[..., :24], a)
    with pytest.raises(ValueError, match=r"appropriate \(4, 4\) must be \(N, N\) = \(3, 3\)"):
        react.react_metrics(pred, lst, spk, np.eye(4, dtype=bool))
    with pytest.raises(ValueError, match="no appropriate listener"):
        react.frcorr(pred, lst, np.zeros((3, 3), bool))
    with pytest.raises(ValueError, match="only 0/1"):
        react.frdist(pred, lst, np.full((3, 3), 0.5))
    bad = pred.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        react.frvar(bad)
    with pytest.raises(ValueError, match="T >= 51"):
        react.frsyn(pred[:, :, :40], spk[:, :40])
    with pytest.raises(ValueError, match="must be a real array"):
        react.frvar(np.array([["a"]]))


def test_missing_numba_gives_one_line_error(monkeypatch):
    monkeypatch.setattr(dtw, "_KERNELS", {})
    monkeypatch.setitem(sys.modules, "numba", None)
    rng = np.random.default_rng(8)
    pred, lst = synth(rng, (2, 1), 10), synth(rng, (2,), 10)
    with pytest.raises(ImportError, match=r"^FRDist needs numba: pip install 'mien\[react\]'$"):
        react.frdist(pred, lst, np.eye(2, dtype=bool))
    assert react.frvar(pred) >= 0  # the other metrics do not need it
