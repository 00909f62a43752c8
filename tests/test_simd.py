"""mien.metrics.simd: numba vector values (loads/stores, broadcast, arithmetic, min, popcount) against numpy."""

from __future__ import annotations

import numpy as np
import pytest

numba = pytest.importorskip("numba")

from mien.metrics.simd import vload, vmin, vpopcount, vsplat, vstore  # noqa: E402


@numba.njit
def _float_ops(a, b, out):
    x, y = vload(a, 8, 8), vload(b, 0, 8)  # a.flat[8:16], b.flat[0:8]
    vstore(out, 0, vmin(x - y, x * y) + vsplat(0.5, 8))
    vstore(out, 8, vmin(vsplat(np.inf, 8), x))


@numba.njit
def _int_ops(a, b, out, small):
    x, y = vload(a, 0, 16), vload(b, 0, 16)
    vstore(out, 0, vpopcount(x ^ y) + vmin(x, vsplat(small, 16)))


def test_float_vectors_match_numpy_bitwise():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 8)), rng.normal(size=8)
    out = np.empty(16)
    _float_ops(a, b, out)
    x = a[1]
    assert out[:8].tolist() == (np.minimum(x - b, x * b) + 0.5).tolist()
    assert out[8:].tolist() == x.tolist()


@pytest.mark.parametrize("dtype", [np.int16, np.int32])
def test_integer_vectors_popcount_xor_min(dtype):
    rng = np.random.default_rng(1)
    info = np.iinfo(dtype)
    a, b = (rng.integers(info.min, info.max, 16, endpoint=True, dtype=dtype) for _ in range(2))
    out = np.empty(16, dtype)
    _int_ops(a, b, out, dtype(3))
    bits = np.iinfo(dtype).bits
    popcount = np.array([bin(int(v) & ((1 << bits) - 1)).count("1") for v in a ^ b], dtype)
    assert out.tolist() == (popcount + np.minimum(a, 3)).tolist()


def test_vload_rejects_non_contiguous_arrays():
    with pytest.raises(numba.core.errors.TypingError):
        _float_ops(np.zeros((2, 16))[:, ::2], np.zeros(8), np.empty(16))
