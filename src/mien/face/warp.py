"""Piecewise-affine image warping on a triangle mesh (the classical landmark-driven face warp).

Each triangle of a mesh is mapped by its own affine transform from its source to its destination position;
pixels are resampled backwards (every destination pixel looks up its source position), so the output has no
holes. Used by :class:`mien.pipelines.reenact.WarpReenactor` (baseline (b) of ``mien evaluate reenact``) with
MediaPipe's face tessellation extended to the image border by a Delaunay triangulation.
"""

from __future__ import annotations

import cv2
import numpy as np


def border_points(width: int, height: int, per_side: int = 4) -> np.ndarray:
    """Points evenly spaced along the image border (corners included).

    Returns:
        float64 (4·per_side, 2) x, y pixels, on the rectangle [0, W−1] × [0, H−1].
    """
    t = np.linspace(0.0, 1.0, per_side + 1)[:-1]
    w, h = width - 1.0, height - 1.0
    top = np.stack([t * w, np.zeros_like(t)], -1)
    right = np.stack([np.full_like(t, w), t * h], -1)
    bottom = np.stack([w - t * w, np.full_like(t, h)], -1)
    left = np.stack([np.zeros_like(t), h - t * h], -1)
    return np.concatenate([top, right, bottom, left])


def mesh_boundary(triangles: np.ndarray) -> np.ndarray:
    """Vertex indices of the outer boundary loop of a disk-like triangle mesh, in order.

    Args:
        triangles: int (F, 3).

    Returns:
        int64 (L,) — the longest closed loop of edges used by exactly one triangle.
    """
    edges = np.sort(np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]]), 1)
    uniq, counts = np.unique(edges, axis=0, return_counts=True)
    nbr: dict[int, list[int]] = {}
    for a, b in uniq[counts == 1]:
        nbr.setdefault(int(a), []).append(int(b))
        nbr.setdefault(int(b), []).append(int(a))
    loops, seen = [], set()
    for start in nbr:
        if start in seen:
            continue
        loop, prev, cur = [start], None, start
        seen.add(start)
        while True:
            nxt = next((v for v in nbr[cur] if v != prev), None)
            if nxt is None or nxt == start or nxt in seen:
                break
            loop.append(nxt)
            seen.add(nxt)
            prev, cur = cur, nxt
        loops.append(loop)
    return np.asarray(max(loops, key=len), np.int64)


def extend_to_border(points: np.ndarray, triangles: np.ndarray, width: int, height: int,
                     per_side: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Add image-border points and Delaunay triangles filling the ring between a face mesh and the border.

    Args:
        points: (V, 2) mesh vertices in pixels (the layout the triangulation is computed on).
        triangles: int (F, 3) the face mesh (e.g. MediaPipe's tessellation of the 468 points).
        width, height: image size in pixels.

    Returns:
        (border (P, 2) float64 pixels, triangles int64 (F + R, 3)) — the ring triangles index the points
        ``concatenate([points, border])``; the ring triangles come first (the face mesh is drawn over them).
    """
    from scipy.spatial import Delaunay

    pts = np.asarray(points, np.float64)[:, :2]
    border = border_points(width, height, per_side)
    loop = mesh_boundary(np.asarray(triangles))
    ring_idx = np.concatenate([loop, len(pts) + np.arange(len(border))])
    ring_pts = np.concatenate([pts[loop], border])
    tri = Delaunay(ring_pts).simplices
    poly = pts[loop].astype(np.float32).reshape(-1, 1, 2)
    centres = ring_pts[tri].mean(1)
    outside = np.array([cv2.pointPolygonTest(poly, (float(x), float(y)), False) < 0 for x, y in centres])
    return border, np.concatenate([ring_idx[tri[outside]], np.asarray(triangles, np.int64)])


class BorderRings:
    """:func:`extend_to_border` of point sets that recur, each computed once: a subject's reference points warped
    to many targets, or one source of a batch animated by several drivers. Rings are kept by the points' exact
    values (float64; a 128-bit BLAKE2 digest of them), the ``size`` most recently used at most, so points that
    change get their own ring. Only what depends on the points is kept (the ring triangles, ~1.2 kB for the 468-point
    mesh, not the whole ~23 kB triangle list); the border points and the face mesh are shared. Thread-safe.

    Args:
        triangles: int (F, 3) the face mesh; width, height: image size in pixels; per_side: border points per
            side (:func:`border_points`); size: most rings kept.

    Calling it with (V, ≥2) points in pixels returns ``extend_to_border(points[:, :2], triangles, width, height,
    per_side)`` (equal arrays; the border array is shared between calls: do not modify it), ready for
    :func:`mesh_warp`'s ``ring``.
    """

    def __init__(self, triangles: np.ndarray, width: int, height: int, per_side: int = 4, size: int = 64):
        import threading

        self.triangles, self.width, self.height, self.per_side = triangles, int(width), int(height), per_side
        self.size = max(int(size), 1)
        self._mesh = np.asarray(triangles, np.int64)
        self._border: np.ndarray | None = None
        self._rings: dict[tuple, np.ndarray] = {}
        self._lock = threading.Lock()

    def __call__(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import hashlib

        pts = np.ascontiguousarray(np.asarray(points, np.float64)[:, :2])
        key = (pts.shape, hashlib.blake2b(pts.tobytes(), digest_size=16).digest())
        with self._lock:
            ring = self._rings.pop(key, None)
            if ring is None:
                border, tri = extend_to_border(pts, self.triangles, self.width, self.height, self.per_side)
                if self._border is None:
                    self._border = border
                ring = tri[:len(tri) - len(self._mesh)].copy()  # the ring triangles come first
                while len(self._rings) >= self.size:
                    self._rings.pop(next(iter(self._rings)))  # the least recently used
            self._rings[key] = ring
            return self._border, np.concatenate([ring, self._mesh])


def piecewise_affine_maps(src: np.ndarray, dst: np.ndarray, triangles: np.ndarray, width: int,
                          height: int) -> tuple[np.ndarray, np.ndarray]:
    """Backward maps of the piecewise-affine warp that moves ``src`` points onto ``dst`` points.

    Args:
        src, dst: (V, 2) point positions in pixels (x, y) in the source and destination images.
        triangles: int (F, 3) indices into the points; later triangles are drawn over earlier ones.
        width, height: destination size in pixels.

    Returns:
        (map_x, map_y) float32 (H, W): the source pixel each destination pixel samples (for ``cv2.remap``);
        pixels that no destination triangle covers map to themselves.
    """
    src = np.asarray(src, np.float64)[:, :2]
    dst = np.asarray(dst, np.float64)[:, :2]
    tri = np.asarray(triangles, np.int64)
    ids = np.full((height, width), -1, np.int32)
    for k, t in enumerate(tri):
        cv2.fillConvexPoly(ids, np.round(dst[t] * 16).astype(np.int32), k, lineType=cv2.LINE_8, shift=4)
    # per triangle: [x_src, y_src] = M @ [x_dst, y_dst, 1];  M = S · D⁻¹ with D the homogeneous dst corners
    D = np.concatenate([dst[tri], np.ones((len(tri), 3, 1))], -1).transpose(0, 2, 1)  # (F, 3, 3)
    S = src[tri].transpose(0, 2, 1)  # (F, 2, 3)
    det = np.linalg.det(D)
    ok = np.abs(det) > 1e-9
    M = np.zeros((len(tri), 2, 3))
    M[:, 0, 0] = M[:, 1, 1] = 1.0  # degenerate (flat) triangles: identity
    M[ok] = S[ok] @ np.linalg.inv(D[ok])
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    map_x, map_y = xs.copy(), ys.copy()
    hit = ids >= 0
    m = M[ids[hit]]
    map_x[hit] = m[:, 0, 0] * xs[hit] + m[:, 0, 1] * ys[hit] + m[:, 0, 2]
    map_y[hit] = m[:, 1, 0] * xs[hit] + m[:, 1, 1] * ys[hit] + m[:, 1, 2]
    return map_x.astype(np.float32), map_y.astype(np.float32)


def piecewise_affine_warp(image: np.ndarray, src: np.ndarray, dst: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Warp ``image`` so that the points ``src`` move to ``dst`` (one affine map per triangle, bilinear).

    Args:
        image: (H, W, C) uint8 image.
        src, dst: (V, 2) pixels; triangles: int (F, 3) (see :func:`piecewise_affine_maps`).

    Returns:
        (H, W, C) uint8, the same size; border pixels replicate the edge.
    """
    h, w = image.shape[:2]
    mx, my = piecewise_affine_maps(src, dst, triangles, w, h)
    return cv2.remap(image, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def mesh_warp(image: np.ndarray, src: np.ndarray, dst: np.ndarray, triangles: np.ndarray | None = None,
              per_side: int | None = None, *, ring: tuple[np.ndarray, np.ndarray] | None = None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The face-mesh warp of one image: ``src`` mesh points move to ``dst``, the ring between the mesh outline
    and the image border (:func:`extend_to_border`, computed on ``src``) follows, the border stays fixed.

    Give either the face mesh (``triangles``, optionally ``per_side``) — the ring is computed here — or a ring
    already computed for ``src`` (``ring``, which holds the triangles it was built with), not both.

    Args:
        image: (H, W, C) uint8, or float32 (any range); src, dst: (V, 2) mesh points in pixels.
        triangles: int (F, 3) the face mesh (e.g. :func:`mien.models.face3d.mien_face.canonical_triangles`);
            per_side: border points per image side (:func:`border_points`; None: 4).
        ring: ``extend_to_border(src, triangles, W, H, per_side)`` (border points, full triangle list) when already
            computed (a source warped to many targets; :class:`BorderRings`).

    Returns:
        (warped (H, W, C) of the image's dtype, map_x, map_y float32 (H, W)) — the same pixels as
        :func:`piecewise_affine_warp` with the extended mesh.

    Raises:
        ValueError: both ``ring`` and ``triangles`` / ``per_side`` given (they would be ignored), or neither
            ``ring`` nor ``triangles``.
    """
    if ring is not None and (triangles is not None or per_side is not None):
        raise ValueError("mesh_warp: pass either ring (which holds its triangles and border) or triangles/per_side, "
                         "not both")
    if ring is None and triangles is None:
        raise ValueError("mesh_warp: pass the face mesh triangles or a precomputed ring")
    h, w = image.shape[:2]
    src = np.asarray(src, np.float64)[:, :2]
    border, tri = extend_to_border(src, triangles, w, h, 4 if per_side is None else per_side) if ring is None else ring
    mx, my = piecewise_affine_maps(np.concatenate([src, border]),
                                   np.concatenate([np.asarray(dst, np.float64)[:, :2], border]), tri, w, h)
    return cv2.remap(image, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE), mx, my


def hull_area(points: np.ndarray) -> float:
    """Area (px²) of the convex hull of points (N, 2)."""
    return float(cv2.contourArea(cv2.convexHull(np.asarray(points, np.float32)[:, :2])))


def relative_targets(source: np.ndarray, driver: np.ndarray, reference: np.ndarray,
                     source_area: float | None = None, reference_area: float | None = None) -> np.ndarray:
    """Relative motion of mesh points: ``source + (driver − reference) · s`` with ``s`` = √(source hull area /
    reference hull area) (FOMM's movement-scale adaptation), float64 (N, 2).

    Args:
        source, driver, reference: (N, ≥2) points in px (the same N mesh points); source_area, reference_area: the
            source's / reference's :func:`hull_area` when already known (one source or reference, many drivers).
    """
    src = np.asarray(source, np.float64)[:, :2]
    ref = np.asarray(reference, np.float64)[:, :2]
    area = hull_area(src) if source_area is None else source_area
    ref_area = hull_area(ref) if reference_area is None else reference_area
    return src + (np.asarray(driver, np.float64)[:, :2] - ref) * np.sqrt(area / max(ref_area, 1e-6))


def shape_distance(source: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """How far each candidate face is from the source face in shape and expression alone: the RMS point distance
    after mapping the candidate onto the source by its least-squares similarity (position, rotation and size
    removed; :func:`mien.face.align.align_to_reference`), in the source's px. After FOMM's choice of the driving frame
    "most aligned with the source" (Siarohin et al., NeurIPS 2019, ``--find_best_frame``, which removes position and
    size only), with mien's one similarity estimator; :func:`mien.models.tokenizer.bank.mesh_distance` ("aligned")
    is the same measure on tensors.

    Args:
        source: (K, ≥2) points px; candidates: (N, K, ≥2) the same K points of N faces.

    Returns:
        float64 (N,) px; NaN for a candidate with non-finite or collapsed (all equal) points, all NaN when the
        source's points are not finite.

    Raises:
        ValueError: shapes do not match.
    """
    from mien.face.align import align_to_reference

    src = np.asarray(source, np.float64)[:, :2]
    cand = np.asarray(candidates, np.float64)[..., :2]
    if src.ndim != 2 or cand.ndim != 3 or cand.shape[1] != src.shape[0]:
        raise ValueError(f"expected source (K, 2) and candidates (N, K, 2); got {src.shape} and {cand.shape}")
    out = np.full(len(cand), np.nan)
    if not np.isfinite(src).all() or src.var(0).sum() <= 1e-12:
        return out
    ok = np.isfinite(cand).all((1, 2))
    ok[ok] = cand[ok].var(1).sum(-1) > 1e-12
    if ok.any():
        aligned = align_to_reference(cand[ok], src)
        out[ok] = np.sqrt(((aligned - src) ** 2).sum(-1).mean(-1))
    return out


__all__ = ["BorderRings", "border_points", "extend_to_border", "hull_area", "mesh_boundary", "mesh_warp",
           "piecewise_affine_maps", "piecewise_affine_warp", "relative_targets", "shape_distance"]
