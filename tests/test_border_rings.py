"""The mesh warp's border ring (:func:`mien.face.warp.extend_to_border`) of recurring points is computed once
(:class:`mien.face.warp.BorderRings`): by the warp tokenizer decoder per subject reference and by the reenact
task's cross-identity warps per source; the warps are bit-identical to computing it every time."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import mien.face.warp as W  # noqa: E402
from mien.models.face3d.mien_face import canonical_triangles  # noqa: E402

pytestmark = pytest.mark.usefixtures("torch_one_thread")
S = 64


def _face(seed: int) -> np.ndarray:
    """(478, 2) float32 crop px: MediaPipe's canonical face (iris points at its eye centres), jittered."""
    from mien.face.geometry import canonical_face

    p = canonical_face()[:, :2] * np.array([1.0, -1.0])
    p = (p - p.min(0)) / (p.max(0) - p.min(0)) * 40 + 12
    p = np.concatenate([p, np.repeat(p.mean(0, keepdims=True), 10, 0)])
    return (p + np.random.default_rng(seed).normal(0, 0.4, p.shape)).astype(np.float32)


@pytest.fixture
def ring_calls(monkeypatch):
    calls = []
    orig = W.extend_to_border

    def counted(*a, **k):
        calls.append(1)
        return orig(*a, **k)

    monkeypatch.setattr(W, "extend_to_border", counted)
    return calls


def test_border_rings_one_ring_per_point_set(ring_calls):
    tri = canonical_triangles()
    a, b, c = (_face(i)[:468].astype(np.float64) for i in range(3))
    rings = W.BorderRings(tri, S, S, size=2)
    first = rings(a)
    again = rings(a.copy())  # the same values: the same ring, not computed again
    assert len(ring_calls) == 1 and again[0] is first[0] and np.array_equal(again[1], first[1])
    ref = W.extend_to_border(a, tri, S, S)
    assert all(np.array_equal(x, y) for x, y in zip(first, ref, strict=True))
    assert all(np.array_equal(x, y) for x, y in zip(rings(b), W.extend_to_border(b, tri, S, S), strict=True))
    rings = W.BorderRings(tri, S, S, size=2)
    rings(a)
    del ring_calls[:]
    rings(b)
    rings(a)  # a most recently used: c evicts b
    rings(c)
    assert len(ring_calls) == 2
    rings(a)
    assert len(ring_calls) == 2
    rings(b)
    assert len(ring_calls) == 3


def test_warp_decoder_ring_once_per_reference_and_identical(ring_calls):
    from mien.models.tokenizer.warp import WarpDecoder

    torch.manual_seed(0)
    dec = WarpDecoder(8, S, 2, hidden=8, refiner_width=0)
    refs = np.stack([_face(0), _face(1)])
    dec.set_references([0, 1], torch.rand(2, 3, S, S), refs)
    ids = torch.tensor([0, 1, 0, 1, 0])
    pts = torch.from_numpy(np.stack([_face(10 + i)[:468] for i in range(5)]))
    expected = []
    for i, k in enumerate(ids.tolist()):  # the warp as it was: mesh_warp computing the ring every time
        img = dec.ref_images[k].permute(1, 2, 0).numpy()
        expected.append(W.mesh_warp(np.ascontiguousarray(img), dec.ref_points[k].double().numpy(),
                                    pts[i].double().numpy(), canonical_triangles())[0])
    del ring_calls[:]
    for _ in range(2):
        out = dec.draw(pts, ids)
        assert torch.equal(out, torch.from_numpy(np.stack(expected)).permute(0, 3, 1, 2))
    assert len(ring_calls) == 2  # one ring per subject reference for 10 warps
    dec.set_references([1], torch.rand(1, 3, S, S), _face(5)[None])  # a new reference: its own ring
    dec.draw(pts[:2], ids[:2])
    assert len(ring_calls) == 3


def test_cross_warp_ring_once_per_source_and_identical(ring_calls):
    pytest.importorskip("lightning")
    from mien.tasks.reenact.data import cross_warp

    g = torch.Generator().manual_seed(0)
    src = torch.randint(0, 256, (4, 3, S, S), dtype=torch.uint8, generator=g)
    slm = torch.from_numpy(np.stack([_face(i) for i in range(4)]))
    dlm = torch.from_numpy(np.stack([_face(20 + i) for i in range(4)]))
    batch = {"src": src, "src_landmarks": slm, "drv_landmarks": dlm, "subject": torch.tensor([0, 0, 1, 1])}
    del ring_calls[:]
    rows, srcs, warped, flow, points = cross_warp(batch)
    assert srcs.tolist() == [2, 2, 0, 0] and len(ring_calls) == 2  # two sources, four warps
    from mien.models.reenact.warpguided import flow_field

    s, d = slm.double().numpy(), dlm.double().numpy()
    for r, (i, j) in enumerate(zip(rows.tolist(), srcs.tolist(), strict=True)):
        tgt = W.relative_targets(s[j, :468], d[i, :468], s[i, :468])
        w, mx, my = W.mesh_warp(src[j].permute(1, 2, 0).numpy(), s[j, :468], tgt, canonical_triangles())
        assert torch.equal(warped[r], torch.from_numpy(w).permute(2, 0, 1).float() / 255.0)
        assert torch.equal(flow[r], torch.from_numpy(flow_field(mx, my)))
        assert torch.equal(points[r], torch.from_numpy(tgt.astype("float32")))


def test_mesh_warp_takes_the_mesh_or_a_ring_not_both():
    """``mesh_warp`` with a precomputed ring (which holds the triangles and border it was built with) is bit-identical
    to the warp computing it from the mesh (any ``per_side``); a call passing an argument the ring would make
    ignored, or neither, is refused."""
    tri = canonical_triangles()
    img = np.random.default_rng(0).integers(0, 256, (S, S, 3), dtype=np.uint8)
    src, dst = _face(0)[:468].astype(np.float64), _face(7)[:468].astype(np.float64)
    for per_side in (None, 6):
        want = W.mesh_warp(img, src, dst, tri, per_side)
        got = W.mesh_warp(img, src, dst, ring=W.extend_to_border(src, tri, S, S, per_side or 4))
        assert all(np.array_equal(a, b) for a, b in zip(want, got, strict=True))
    assert not np.array_equal(W.mesh_warp(img, src, dst, tri, 6)[1], W.mesh_warp(img, src, dst, tri)[1])
    ring = W.extend_to_border(src, tri, S, S)
    for bad in ({"triangles": tri}, {"per_side": 4}):
        with pytest.raises(ValueError, match="not both"):
            W.mesh_warp(img, src, dst, ring=ring, **bad)
    with pytest.raises(ValueError, match="triangles or a precomputed ring"):
        W.mesh_warp(img, src, dst)
