"""Exact multivariate dynamic time warping and nearest-reference search under a weighted sum of per-slice DTWs
(the distance of REACT's FRDist, :func:`mien.metrics.react.frdist`).

DTW here is ``tslearn.metrics.dtw``: ``sqrt(min over warping paths π of Σ_{(a,b)∈π} ||x_a − y_b||²)``, no band,
each slice of the feature axis warped on its own. The kernels are generated numba code, compiled on first use
(``numba``, the ``react`` extra), bit-identical to tslearn: the same per-cell sums of squared differences in the
same order and the same min-plus recursion.

:func:`nearest_weighted_dtw` computes, for many query sequences, the minimum over each query's candidate
references of ``Σ_s w_s DTW(x[:, s], y[:, s])``. Many queries against one reference advance together in SIMD
lanes, in ``workers`` threads (the kernels release the GIL). A slice whose values are all 0/1 (REACT's AU
occurrences) is packed into integer bit codes: its cell cost is the popcount of an XOR — exact, the squared
differences are 0 or 1 and their sums are small integers. The last slice's DTW is computed only for the
candidates that bounds cannot rule out (exact: see the function). A kernel call may hold several references,
each one's lanes padded to whole AVX-512 vectors (a lane count off the vector width runs up to 3× slower per
lane): ~10 % less CPU than one reference per call.

Tried and dropped, for the record (CPU per candidate pair at T = 750 on the benchmark's data, 2 shared cores):
abandoning a DTW once its row minimum exceeds the best value (the row minimum grows too late to prune: ~2 %
saved on REACT-like data); fusing the cost and min-plus loops or advancing several rows per sweep (slower or no
gain); int32 accumulators for the packed AUs (no gain); numba ``fastmath`` nnan/nsz (no gain). Cheap lower
bounds to prune whole candidates: the row/column minima of the cost matrix (Σ_a min_b c, Σ_b min_a c) reach a
median 0.61 of the exact weighted sum and leave 70 % of the DTWs to compute while costing the cost matrix (most
of a DTW); a DTW of x against 5-frame boxes of y (0.76, 42 % left) costs 1/5 of a DTW per slice and candidate,
no better than deferring the expression slice; ordering the slices VA, AU, expression saves ~8 % in a cost model
(not worth a third pass). A float32 pre-pass with rigorous error bounds (input rounding η√(n·D) plus γ_n for the
sums: intervals ~1e-4 wide, so only ~1 candidate per query needs float64): the float32 kernel is 1.6× faster
per lane, but the float64 recompute then runs a few lanes per reference and the float32 pass fragments the same
way: 1.00 vs 0.99 ms per pair end to end, so it was dropped.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

__all__ = ["dtw_multi", "nearest_weighted_dtw", "usable_workers"]

_BIG = 1 << 30  # "infinity" of the int32 recursion: 15 × path length stays far below it
_KERNELS: dict[tuple, Any] = {}


def _numba():
    try:
        import numba
    except ImportError:
        raise ImportError("FRDist needs numba: pip install 'mien[react]'") from None
    return numba


def _kernel(slices: tuple[tuple[int, int], ...], packed: bool):
    """numba ``advance(Xf (Tx, Df, L), Xb (Tx, L) int32, Yf (G, Ty, Df), Yb (G, Ty) int32, gs (G+1,) int64,
    pf (Ty+1, S, L), a0, a1) -> pf``: rows a0…a1−1 of the DTW recursions of L lanes, lanes gs[g]…gs[g+1]−1
    against reference g. Slices: when ``packed``, first the bit-code slice Xb/Yb (cost popcount(x ^ y), an exact
    integer), then the float slices ``slices`` of Xf. pf holds the accumulated costs of the row before a0
    (before row 0: 0 at column 0, inf elsewhere) and comes back holding row a1−1. Per cell: one vectorised loop
    per reference over its lanes computes each slice's cost with the dimensions unrolled (tslearn's order of
    summation), then one loop over all (slice, lane) pairs of the row does the min-plus step on flat views
    (``left`` carries the row's last cell, so no loop reads what it writes; the views are made once per row: a
    view per cell costs more than the cell; unsigned lane bounds: with signed ones numba's negative-index
    wraparound keeps the loops from vectorising, 3× slower). Generated source, compiled on first use."""
    key = (slices, packed)
    if key not in _KERNELS:
        numba = _numba()
        dims = sorted({d for lo, hi in slices for d in range(lo, hi)})
        cost = []
        for s, (lo, hi) in enumerate(slices, start=int(packed)):
            terms = " + ".join(f"(xa[{d}, l] - y{d}) * (xa[{d}, l] - y{d})" for d in range(lo, hi))
            cost.append(f"                    c[{s}, l] = {terms}")
        popcount = ["                u = xb[l] ^ yv",  # SWAR popcount of a code of at most 30 bits
                    "                u = u - ((u >> 1) & 0x55555555)",
                    "                u = (u & 0x33333333) + ((u >> 2) & 0x33333333)",
                    "                u = (u + (u >> 4)) & 0x0F0F0F0F",
                    "                u = u + (u >> 8)",
                    "                c[0, l] = (u + (u >> 16)) & 0x3F"]
        src = [
            "def advance(Xf, Xb, Yf, Yb, gs, pf, a0, a1):",
            "    ty, nl, ns, ng = Yf.shape[1], Xf.shape[2], pf.shape[1], Yf.shape[0]",
            "    m = ns * nl",
            "    qf = np.empty_like(pf)",
            "    c = np.empty((ns, nl))",
            "    c1 = c.reshape(-1)",
            "    lf = np.empty(m)",
            "    for a in range(a0, a1):",
            "        xa = Xf[a]",
            *(["        xb = Xb[a]"] if packed else []),
            "        qf[0] = np.inf",
            "        lf[:] = np.inf",
            "        p1 = pf.reshape(-1)",
            "        q1 = qf.reshape(-1)",
            "        for b in range(ty):",
            "            for g in range(ng):",
            "                l0, l1 = np.uint64(gs[g]), np.uint64(gs[g + 1])",  # unsigned: no wraparound checks
            *([*[f"                y{d} = Yf[g, b, {d}]" for d in dims],
               "                for l in range(l0, l1):", *cost] if cost else []),
            *(["                yv = Yb[g, b]",
               "                for l in range(l0, l1):",
               *["    " + line for line in popcount]] if packed else []),
            "            o = b * m",
            "            for i in range(m):",
            "                v = c1[i] + min(min(p1[o + i], p1[o + m + i]), lf[i])",
            "                lf[i] = v",
            "                q1[o + m + i] = v",
            "        pf, qf = qf, pf",
            "    return pf",
        ]
        ns: dict[str, Any] = {"np": np}
        exec(compile("\n".join(src), "<mien.metrics.dtw kernel>", "exec"), ns)  # noqa: S102 - generated above
        _KERNELS[key] = numba.njit(nogil=True, boundscheck=False)(ns["advance"])
    return _KERNELS[key]


def _start(ty: int, ns: int, nl: int) -> np.ndarray:
    pf = np.full((ty + 1, ns, nl), np.inf)
    pf[0] = 0.0
    return pf


_NO_CODES = np.zeros((1, 1), np.int32)


def dtw_multi(x: Any, y: Any, slices: tuple[tuple[int, int], ...]) -> np.ndarray:
    """DTW of two (T, D) sequences on each slice ``(lo, hi)`` of the feature axis: (S,) float64, each
    ``sqrt(min over warping paths Σ ||x_a[lo:hi] − y_b[lo:hi]||²)`` (``tslearn.metrics.dtw``, bit-identical).
    Lengths may differ. Needs numba."""
    x = np.ascontiguousarray(np.asarray(x, dtype=np.float64)[:, :, None])
    y = np.ascontiguousarray(np.asarray(y, dtype=np.float64)[None])
    slices = tuple((int(lo), int(hi)) for lo, hi in slices)
    gs = np.array([0, 1], np.int64)
    pf = _kernel(slices, False)(x, _NO_CODES, y, _NO_CODES, gs, _start(y.shape[1], len(slices), 1), 0, len(x))
    return np.sqrt(pf[-1, :, 0])


def _pack(z: np.ndarray, lo: int, hi: int) -> np.ndarray | None:
    """(M, T, D) → (M, T) int32 bit codes of z[..., lo:hi] when all those values are 0 or 1, else None."""
    codes = np.zeros(z.shape[:2], np.int32)
    for c in range(0, len(z), 64):  # chunks bound the temporaries
        part = z[c:c + 64, :, lo:hi]
        one = part == 1
        if not (one | (part == 0)).all():
            return None
        codes[c:c + 64] = one.astype(np.int32) @ (np.int32(1) << np.arange(hi - lo, dtype=np.int32))
    return codes


def usable_workers(workers: int | None) -> int:
    """``workers`` (at least 1), or the cores this process may use when None."""
    if workers is not None:
        return max(1, int(workers))
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _pieces(sel: np.ndarray, cand_r: np.ndarray, lanes: int, width: int) -> list[list[np.ndarray]]:
    """Kernel calls for the candidates ``sel``: each call a list of pieces (candidates of one reference, each
    padded to a multiple of ``width`` lanes in the call), together at most ``lanes`` padded lanes (a piece
    alone may reach ``lanes`` rounded up). A lane count off the SIMD width runs far slower, and references
    with few candidates share a call instead of running short of lanes."""
    order = sel[np.argsort(cand_r[sel], kind="stable")]
    groups = np.split(order, np.flatnonzero(np.diff(cand_r[order])) + 1) if len(order) else []
    pieces = sorted((p for g in groups for p in np.array_split(g, -(-len(g) // lanes))), key=len, reverse=True)
    calls: list[list[np.ndarray]] = []
    free: list[int] = []
    for piece in pieces:  # first fit, longest first
        need = -(-len(piece) // width) * width
        i = next((i for i, f in enumerate(free) if f >= need), len(calls))
        if i == len(calls):
            calls.append([])
            free.append(max(lanes, need))
        calls[i].append(piece)
        free[i] -= need
    return calls


def _run_calls(queries: np.ndarray, refs: np.ndarray, qcodes: np.ndarray | None, rcodes: np.ndarray | None,
               cand_q: np.ndarray, cand_r: np.ndarray, sel: np.ndarray, fslices: tuple[tuple[int, int], ...],
               lanes: int, ex: ThreadPoolExecutor) -> np.ndarray:
    """(S, len(sel)) float64: the accumulated squared costs (DTW²) of the candidates ``sel`` on the packed
    slice (when ``qcodes`` is given) then the float slices ``fslices``."""
    pack = qcodes is not None
    fdims = np.array([d for lo, hi in fslices for d in range(lo, hi)], dtype=np.int64)
    bounds = np.cumsum([0] + [hi - lo for lo, hi in fslices])
    kernel = _kernel(tuple(zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True)), pack)
    width = 8  # float64 lanes of an AVX-512 vector
    ns = int(pack) + len(fslices)
    out = np.zeros((ns, len(cand_q)))

    def run(call: list[np.ndarray]) -> None:
        qs, gs = [], [0]
        for piece in call:
            q = cand_q[piece]
            qs.append(np.r_[q, np.full(-len(q) % width, q[-1])])
            gs.append(gs[-1] + len(qs[-1]))
        q = np.concatenate(qs)
        rs = np.array([cand_r[piece[0]] for piece in call])
        xf = np.ascontiguousarray(queries[q][:, :, fdims].transpose(1, 2, 0))  # (T, Df, L)
        xb = np.ascontiguousarray(qcodes[q].T) if pack else _NO_CODES
        yf = np.ascontiguousarray(refs[rs][:, :, fdims])  # (G, T, Df)
        yb = np.ascontiguousarray(rcodes[rs]) if pack else _NO_CODES
        acc = kernel(xf, xb, yf, yb, np.array(gs, np.int64), _start(yf.shape[1], ns, len(q)), 0,
                     len(xf))[-1]
        for piece, g0 in zip(call, gs, strict=False):
            out[:, piece] = acc[:, g0:g0 + len(piece)]

    list(ex.map(run, _pieces(sel, cand_r, lanes, width)))
    return out[:, sel]


def nearest_weighted_dtw(queries: np.ndarray, refs: np.ndarray, cand_q: np.ndarray, cand_r: np.ndarray,
                         slices: tuple[tuple[int, int, float], ...], workers: int | None = None,
                         lanes: int = 40, prune: bool = True) -> np.ndarray:
    """For each query q: ``min over candidates (q, r) of Σ_s w_s DTW(queries[q][:, lo:hi], refs[r][:, lo:hi])``,
    the terms added in the order of ``slices`` ((lo, hi, w), w ≥ 0) as ``res += w * dtw(...)`` from 0.

    queries (Q, Tq, D), refs (M, Tr, D) float64; cand_q, cand_r: int arrays listing the candidate pairs (a
    query without one gets inf). Returns (Q,) float64, exactly the minimum of the candidates' sums: the DTW of
    every candidate that can be the minimum is computed in float64, bit-identical to ``tslearn.metrics.dtw``.

    The first slice is bit-packed when all its values, in queries and refs, are 0/1 and it spans ≤ 30 dims.
    With ``prune`` (sequences of one length, a query with several candidates), the last slice is deferred:
    every candidate's other slices are computed first; the sum with the last term set to 0 is a lower bound of
    the full sum (the terms are ≥ 0 and floating-point addition is monotone in each operand), and the same sum
    with the last slice's cost along the diagonal path (lock-step, no warping: never below the DTW; a 1e-9
    relative margin covers a different order of summation) an upper bound. The last slice is computed only for
    candidates whose lower bound does not exceed the query's least upper bound: the minimum's lower bound is at
    most its sum, which is at most every candidate's upper bound, so it is always among them; the others get
    inf. On REACT-like data about half the expression DTWs are skipped. ``prune=False`` computes every
    candidate in full (for checks).
    Candidates are grouped by reference; a kernel call takes up to ``lanes`` queries (each reference's share
    padded to whole SIMD vectors, several references per call when their shares are small, :func:`_pieces`),
    calls run in ``workers`` threads (default: the usable cores)."""
    queries = np.asarray(queries, dtype=np.float64)
    refs = np.asarray(refs, dtype=np.float64)
    cand_q, cand_r = np.asarray(cand_q, dtype=np.int64), np.asarray(cand_r, dtype=np.int64)
    weights = [float(w) for _, _, w in slices]
    lo0, hi0 = slices[0][0], slices[0][1]
    qcodes = _pack(queries, lo0, hi0) if hi0 - lo0 <= 30 else None
    rcodes = _pack(refs, lo0, hi0) if qcodes is not None else None
    packed = rcodes is not None
    if not packed:
        qcodes = None
    fslices = tuple((lo, hi) for lo, hi, _ in slices[int(packed):])
    tx, ty = queries.shape[1], refs.shape[1]
    every = np.arange(len(cand_q))
    dist = np.zeros((len(slices), len(cand_q)))  # per-slice DTWs of the candidates

    def total(sel: np.ndarray) -> np.ndarray:
        out = np.zeros(len(sel))
        for w, d in zip(weights, dist[:, sel], strict=True):
            out = out + w * d
        return out

    with ThreadPoolExecutor(usable_workers(workers)) as ex:
        if (not prune or not len(cand_q) or np.bincount(cand_q, minlength=len(queries)).max() < 2
                or tx != ty or len(slices) == 1):
            dist[:] = np.sqrt(_run_calls(queries, refs, qcodes, rcodes, cand_q, cand_r, every, fslices, lanes,
                                         ex))
            vals = total(every)
        else:
            dist[:-1] = np.sqrt(_run_calls(queries, refs, qcodes, rcodes, cand_q, cand_r, every, fslices[:-1],
                                           lanes, ex))
            bound = total(every)  # dist[-1] is still 0
            lo, hi = fslices[-1]
            w = weights[-1]
            lock = np.empty(len(cand_q))  # the last slice's cost along the diagonal path, ≥ its DTW
            for c in range(0, len(cand_q), 256):
                diff = queries[cand_q[c:c + 256], :, lo:hi] - refs[cand_r[c:c + 256], :, lo:hi]
                lock[c:c + 256] = np.einsum("ntd,ntd->n", diff, diff)
            upper = (bound + w * np.sqrt(lock)) * (1 + 1e-9)  # margin: a different order of summation
            least = np.full(len(queries), np.inf)
            np.minimum.at(least, cand_q, upper)
            needed = every[~(bound > least[cand_q])]
            dist[-1, needed] = np.sqrt(_run_calls(queries, refs, None, None, cand_q, cand_r, needed, fslices[-1:],
                                                  lanes, ex))[0]
            vals = np.full(len(cand_q), np.inf)
            vals[needed] = total(needed)
    out = np.full(len(queries), np.inf)
    np.minimum.at(out, cand_q, vals)
    return out
