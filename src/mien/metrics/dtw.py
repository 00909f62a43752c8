"""Exact multivariate dynamic time warping and nearest-reference search under a weighted sum of per-slice DTWs
(the distance of REACT's FRDist, :func:`mien.metrics.react.frdist`).

DTW here is ``tslearn.metrics.dtw``: ``sqrt(min over warping paths π of Σ_{(a,b)∈π} ||x_a − y_b||²)``, no band,
each slice of the feature axis warped on its own. The kernels are generated numba code, compiled on first use
(``numba``, the ``react`` extra), bit-identical to tslearn: per cell the squared differences summed in
tslearn's order (``0.0 + d₀² + d₁² + …``, the leading ``0.0 +`` being exact), then
``D[a, b] = cost + min(D[a−1, b−1], D[a−1, b], D[a, b−1])`` (a minimum is exact in any order).

:func:`nearest_weighted_dtw` computes, for many query sequences, the minimum over each query's candidate
references of ``Σ_s w_s DTW(x[:, s], y[:, s])``. A kernel runs blocks of 16 or 8 candidates of one reference in
SIMD lanes (float64: one lane per candidate in 8-lane AVX-512 vectors), row by row over the query, sweeping the
reference's frames; each row's running cell and the previous row's diagonal cell of every lane are vector
values held in registers (:mod:`mien.metrics.simd`), so a cell costs one vector load and one store of the
row state, the reference frame's values broadcast. Blocks run in ``workers`` threads (the kernels release the
GIL). A first slice whose values are all 0/1 (REACT's AU occurrences) is packed into integer bit codes: its
cell cost is the popcount of an XOR, the squared differences being 0 or 1, and its recursion runs in int16
lanes (a 16-lane block in one 256-bit vector) when ``max(Tx, Ty) · bits`` — a bound on every cell, the cost of
one path through it — stays below int16's maximum (int32 up to int32's, the float path beyond): integer sums
of small integers, exactly the float64 values. Fused with the float slices in one sweep it costs almost
nothing. The last slice's DTW is computed only for the candidates that bounds cannot rule out (exact: see the
function).

Blocks are 16 lanes wide where a block's query values and running cells fit in the vector registers, else 8
(:func:`_widths`). CPU per lane and cell at T = 750 (2 shared Zen 4 cores, alone in a kernel): AU (int16) +
valence/arousal 0.21 ns, expression 0.62 ns, non-binary AUs + valence/arousal 1.8 ns (2.0 in 16-lane
blocks); the previous kernel took 0.97, 0.91 and 2.5 ns: its lanes spanned a whole call, one loop per cell over
all of them, so the running cell went through memory (three stores per vector and cell) and the AU costs were
converted to float64
(int32 accumulators there gained nothing; the int16 recursion riding along the VA sweep is nearly free, AU
alone 0.03–0.04 ns). Tried and dropped (same conditions): abandoning a DTW once its row minimum exceeds the
best value (~2 % saved); fusing loops or advancing several rows per sweep in the old kernel (no gain); numba
``fastmath`` (no gain); a float32 pre-pass with rigorous error bounds (1.6× faster per lane, but the float64
recompute fragments the lanes: no gain end to end); cheap lower bounds on whole candidates (row/column minima
of the cost matrix: a median 0.61 of the exact weighted sum, 70 % of the DTWs left; a DTW against 5-frame
boxes: 0.76, 42 % left, at 1/5 of a DTW). The deferred expression slice is computed for 49 % of the
candidates on the benchmark's data; with the same bound an oracle knowing each query's minimum would still
need 46.6 %, so computing a likely minimum first, to prune against its exact value, gains nothing. Blocks
mixing references (the reference frame loaded per lane instead of broadcast) cost 11 % (expression) to 25 %
(AU + VA) more per lane and cell, against padding of ~17 % and 7 % of the lanes: not pursued. 32-lane float
blocks spill registers on the expression slice (0.85 ns).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

__all__ = ["dtw_multi", "nearest_weighted_dtw", "usable_workers"]

_KERNELS: dict[tuple, Any] = {}
_VEC = 8  # float64 lanes per AVX-512 vector
_WIDTHS = (16, 8)  # lanes per block: a reference's candidates run 16 at a time, the rest in one block of 16 or 8
_REGISTERS = 24  # of AVX-512's 32 vector registers, for the query values and running cells of 16-lane blocks


def _numba():
    try:
        import numba
    except ImportError:
        raise ImportError("FRDist needs numba: pip install 'mien[react]'") from None
    return numba


def _kernel(width: int, code_type: type | None, slices: tuple[tuple[int, int], ...]):
    """numba ``run(Qi (Q, Tx), Ri (M, Ty), Qf (Q, Tx, D), Rf (M, Ty, D), qidx (B, W) int64, ref (B,) int64,
    out (B, S, W))``: the squared DTWs of B blocks of W = ``width`` lanes, lane l of block k being query
    ``qidx[k, l]`` against reference ``ref[k]``. Slices: when ``code_type`` (np.int16/np.int32, the dtype of
    Qi/Ri) is given, first the bit-code slice Qi/Ri (cost popcount(x ^ y)) in integer lanes, then the float
    slices ``slices`` ((lo, hi) dims of Qf/Rf). ``out[k, s, l]`` is DTW² of slice s (an integer total converted
    exactly). Generated source: per query row, the lanes' query values are gathered into vectors; along the
    sweep over the reference's frames, per vector of lanes and slice, ``dg`` (previous row, previous column)
    and ``lf`` (this row, previous column) are carried in registers; ``pi``/``pf`` hold the previous row
    (before row 0: 0 at column −1, infinite elsewhere), each cell read before it is overwritten in place."""
    key = (width, code_type, slices)
    if key in _KERNELS:
        return _KERNELS[key]
    numba = _numba()
    from mien.metrics import simd

    w, sf = width, len(slices)
    dims = sorted({d for lo, hi in slices for d in range(lo, hi)})
    src = ["def run(Qi, Ri, Qf, Rf, qidx, ref, out):",
           f"    nb, tx, ty = qidx.shape[0], {'Qi' if code_type else 'Qf'}.shape[1], "
           f"{'Ri' if code_type else 'Rf'}.shape[1]",
           f"    inf = vsplat(np.inf, {_VEC})",
           f"    pf = np.empty((ty + 1) * {sf * w})",
           f"    xf = np.empty({max(len(dims), 1) * w})"]
    if code_type:
        ct = code_type.__name__
        src += [f"    pi = np.empty((ty + 1) * {w}, np.{ct})",
                f"    xc = np.empty({w}, np.{ct})",
                f"    big = np.{ct}({np.iinfo(code_type).max})",
                f"    vbig = vsplat(big, {w})"]
    src += ["    for k in range(nb):",
            "        g = ref[k]",
            f"        pf[:] = np.inf; pf[:{sf * w}] = 0.0"]
    if code_type:
        src += [f"        pi[:] = big; pi[:{w}] = 0"]
    src += ["        for a in range(tx):",
            f"            for l in range({w}):",
            "                q = qidx[k, l]",
            *(["                xc[l] = Qi[q, a]"] if code_type else []),
            *[f"                xf[{j * w} + l] = Qf[q, a, {d}]" for j, d in enumerate(dims)]]
    if code_type:
        src += [f"            xi = vload(xc, 0, {w})",
                f"            idg = vload(pi, 0, {w}); vstore(pi, 0, vbig); ilf = vbig"]
    for v in range(w // _VEC):
        src += [f"            x{d}_{v} = vload(xf, {j * w + v * _VEC}, {_VEC})" for j, d in enumerate(dims)]
        for s in range(sf):
            at = s * w + v * _VEC
            src += [f"            dg{s}_{v} = vload(pf, {at}, {_VEC}); vstore(pf, {at}, inf); lf{s}_{v} = inf"]
    src += ["            for b in range(ty):"]
    if code_type:
        src += [f"                iup = vload(pi, (b + 1) * {w}, {w})",
                f"                ilf = vpopcount(xi ^ vsplat(Ri[g, b], {w})) + vmin(vmin(idg, iup), ilf)",
                "                idg = iup",
                f"                vstore(pi, (b + 1) * {w}, ilf)"]
    if sf:
        src += [*[f"                y{d} = vsplat(Rf[g, b, {d}], {_VEC})" for d in dims],
                f"                o = (b + 1) * {sf * w}"]
    for v in range(w // _VEC):
        for s, (lo, hi) in enumerate(slices):
            at = s * w + v * _VEC
            cost = " + ".join(f"e{d} * e{d}" for d in range(lo, hi))  # tslearn's order; 0.0 + e² == e²
            src += [f"                {'; '.join(f'e{d} = x{d}_{v} - y{d}' for d in range(lo, hi))}",
                    f"                up = vload(pf, o + {at}, {_VEC})",
                    f"                lf{s}_{v} = ({cost}) + vmin(vmin(dg{s}_{v}, up), lf{s}_{v})",
                    f"                dg{s}_{v} = up",
                    f"                vstore(pf, o + {at}, lf{s}_{v})"]
    src += [f"        for l in range({w}):"]
    if code_type:
        src += [f"            out[k, 0, l] = pi[ty * {w} + l]"]
    src += [f"            out[k, {s + bool(code_type)}, l] = pf[ty * {sf * w} + {s * w} + l]" for s in range(sf)]
    ns: dict[str, Any] = {"np": np, **{name: getattr(simd, name) for name in simd.__all__}}
    exec(compile("\n".join(src), "<mien.metrics.dtw kernel>", "exec"), ns)  # noqa: S102 - generated above
    _KERNELS[key] = numba.njit(nogil=True, boundscheck=False)(ns["run"])
    return _KERNELS[key]


def _lockstep():
    """numba ``run(Q (Q, T, D), R (M, T, D), cand_q, cand_r, lo, hi, out)``: ``out[i] = Σ_t ||Q[cand_q[i], t,
    lo:hi] − R[cand_r[i], t, lo:hi]||²``, the cost of the diagonal warping path (an upper bound of DTW²)."""
    if "lockstep" not in _KERNELS:
        def run(Q, R, cand_q, cand_r, lo, hi, out):  # noqa: N803 - array names as in the docstring
            for i in range(len(cand_q)):
                q, r, acc = cand_q[i], cand_r[i], 0.0
                for t in range(Q.shape[1]):
                    for d in range(lo, hi):
                        e = Q[q, t, d] - R[r, t, d]
                        acc += e * e
                out[i] = acc

        _KERNELS["lockstep"] = _numba().njit(nogil=True, boundscheck=False)(run)
    return _KERNELS["lockstep"]


_NO_CODES = np.zeros((1, 1), np.int16)


def dtw_multi(x: Any, y: Any, slices: tuple[tuple[int, int], ...]) -> np.ndarray:
    """DTW of two (T, D) sequences on each slice ``(lo, hi)`` of the feature axis: (S,) float64, each
    ``sqrt(min over warping paths Σ ||x_a[lo:hi] − y_b[lo:hi]||²)`` (``tslearn.metrics.dtw``, bit-identical).
    Lengths may differ. Needs numba."""
    x = np.ascontiguousarray(np.asarray(x, dtype=np.float64)[None])
    y = np.ascontiguousarray(np.asarray(y, dtype=np.float64)[None])
    slices = tuple((int(lo), int(hi)) for lo, hi in slices)
    out = np.empty((1, len(slices), _VEC))
    _kernel(_VEC, None, slices)(_NO_CODES, _NO_CODES, x, y, np.zeros((1, _VEC), np.int64), np.zeros(1, np.int64),
                                out)  # x in all 8 lanes of one block
    return np.sqrt(out[0, :, 0])


def _code_type(bits: int, tx: int, ty: int) -> type | None:
    """The integer type for the DTW of a ``bits``-dim 0/1 slice packed in codes: every cell's accumulated cost
    is at most one path's, ``max(tx, ty) · bits``, which must stay below the type's maximum (the recursion's
    "infinity"); np.int16, np.int32, or None (the float path)."""
    for t in (np.int16, np.int32):
        if bits < np.iinfo(t).bits and max(tx, ty) * bits < np.iinfo(t).max:
            return t
    return None


def _pack(z: np.ndarray, lo: int, hi: int) -> np.ndarray | None:
    """(M, T, D) → (M, T) int32 bit codes of z[..., lo:hi] (< 31 dims) when all those values are 0 or 1, else
    None."""
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


def _widths(fslices: tuple[tuple[int, int], ...]) -> tuple[int, ...]:
    """Block widths for these float slices: 16 and 8 lanes when a 16-lane block's query values and running
    cells (2 vectors × (dims + 2 per slice)) fit in ``_REGISTERS`` vector registers, else 8 (spilling them
    costs more than 16 lanes save: non-binary AUs with valence/arousal, 17 float dims, run ~12 % faster in 8)."""
    need = 2 * sum(hi - lo + 2 for lo, hi in fslices)
    return _WIDTHS if need <= _REGISTERS else _WIDTHS[-1:]


def _blocks(sel: np.ndarray, cand_r: np.ndarray, widths: tuple[int, ...] = _WIDTHS) -> dict[int, np.ndarray]:
    """The candidates ``sel`` in blocks of one reference each: {width: (B, width) candidate indices}, a
    reference's candidates ``widths[0]`` at a time, the rest in a block of the smallest width that holds them,
    padded by repeating its last candidate (a padded lane computes a copy)."""
    order = sel[np.argsort(cand_r[sel], kind="stable")]
    groups = np.split(order, np.flatnonzero(np.diff(cand_r[order])) + 1) if len(order) else []
    blocks: dict[int, list[np.ndarray]] = {w: [] for w in widths}
    for group in groups:
        for s in range(0, len(group), widths[0]):
            part = group[s:s + widths[0]]
            w = min(w for w in widths if w >= len(part))
            blocks[w].append(np.r_[part, np.full(w - len(part), part[-1])])
    return {w: np.array(b, dtype=np.int64).reshape(-1, w) for w, b in blocks.items()}


def _run_calls(queries: np.ndarray, refs: np.ndarray, qcodes: np.ndarray | None, rcodes: np.ndarray | None,
               cand_q: np.ndarray, cand_r: np.ndarray, sel: np.ndarray, fslices: tuple[tuple[int, int], ...],
               lanes: int, ex: ThreadPoolExecutor) -> np.ndarray:
    """(S, len(sel)) float64: the accumulated squared costs (DTW²) of the candidates ``sel`` on the packed
    slice (when ``qcodes`` is given, integer codes) then the float slices ``fslices``; kernel calls of up to
    ``lanes`` lanes (at least one block) in the threads of ``ex``. queries/refs C-contiguous float64."""
    code_type = None if qcodes is None else qcodes.dtype.type
    ns = int(code_type is not None) + len(fslices)
    qi, ri = (_NO_CODES, _NO_CODES) if code_type is None else (qcodes, rcodes)
    sel_q, sel_r = cand_q[sel], cand_r[sel]
    out = np.empty((ns, len(sel)))  # every column is written: each position of sel is in one block

    blocks = _blocks(np.arange(len(sel)), sel_r, _widths(fslices))  # positions in sel
    kernels = {w: _kernel(w, code_type, fslices) for w, b in blocks.items() if len(b)}  # compiled here, once

    def run(w: int, idx: np.ndarray) -> None:
        acc = np.empty((len(idx), ns, w))
        kernels[w](qi, ri, queries, refs, sel_q[idx], sel_r[idx[:, 0]], acc)
        out[:, idx.reshape(-1)] = acc.transpose(1, 0, 2).reshape(ns, -1)  # a padded lane repeats its copy

    calls = [(w, b[c:c + max(1, lanes // w)]) for w, b in blocks.items() for c in range(0, len(b), max(1, lanes // w))]
    for f in [ex.submit(run, w, idx) for w, idx in calls]:
        f.result()
    return out


def nearest_weighted_dtw(queries: np.ndarray, refs: np.ndarray, cand_q: np.ndarray, cand_r: np.ndarray,
                         slices: tuple[tuple[int, int, float], ...], workers: int | None = None,
                         lanes: int = 64, prune: bool = True) -> np.ndarray:
    """For each query q: ``min over candidates (q, r) of Σ_s w_s DTW(queries[q][:, lo:hi], refs[r][:, lo:hi])``,
    the terms added in the order of ``slices`` ((lo, hi, w), w ≥ 0) as ``res += w * dtw(...)`` from 0.

    queries (Q, Tq, D), refs (M, Tr, D) float64; cand_q, cand_r: int arrays listing the candidate pairs (a
    query without one gets inf). Returns (Q,) float64, exactly the minimum of the candidates' sums: the DTW of
    every candidate that can be the minimum is computed in float64, bit-identical to ``tslearn.metrics.dtw``.

    The first slice is bit-packed when all its values, in queries and refs, are 0/1 and its integer DTW fits
    int16 or int32 (:func:`_code_type`; REACT's 15 AUs: int16 up to 2,184 frames).
    With ``prune`` (sequences of one length, a query with several candidates), the last slice is deferred:
    every candidate's other slices are computed first; the sum with the last term set to 0 is a lower bound of
    the full sum (the terms are ≥ 0 and floating-point addition is monotone in each operand), and the same sum
    with the last slice's cost along the diagonal path (lock-step, no warping: never below the DTW; a 1e-9
    relative margin covers a different order of summation) an upper bound. The last slice is computed only for
    candidates whose lower bound does not exceed the query's least upper bound: the minimum's lower bound is at
    most its sum, which is at most every candidate's upper bound, so it is always among them; the others get
    inf. On REACT-like data about half the expression DTWs are skipped. ``prune=False`` computes every
    candidate in full (for checks).
    Candidates are grouped by reference in blocks of 16 or 8 lanes (:func:`_blocks`); a kernel call takes
    blocks of one width, up to ``lanes`` lanes (at least one block); calls run in ``workers`` threads (default:
    the usable cores)."""
    queries = np.ascontiguousarray(queries, dtype=np.float64)
    refs = np.ascontiguousarray(refs, dtype=np.float64)
    cand_q, cand_r = np.asarray(cand_q, dtype=np.int64), np.asarray(cand_r, dtype=np.int64)
    weights = [float(w) for _, _, w in slices]
    tx, ty = queries.shape[1], refs.shape[1]
    lo0, hi0 = slices[0][0], slices[0][1]
    code_type = _code_type(hi0 - lo0, tx, ty)
    qcodes = _pack(queries, lo0, hi0) if code_type else None
    rcodes = _pack(refs, lo0, hi0) if qcodes is not None else None
    packed = rcodes is not None
    qcodes, rcodes = (qcodes.astype(code_type), rcodes.astype(code_type)) if packed else (None, None)
    fslices = tuple((lo, hi) for lo, hi, _ in slices[int(packed):])
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
            _lockstep()(queries, refs, cand_q, cand_r, lo, hi, lock)
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
