"""Draw a triangle mesh with OpenCV: painter's algorithm (triangles filled far to near) with Lambertian
shading from the vertex normals — a CPU renderer for the ``mien render face3d`` panels, no GPU or rasteriser
library needed.

Coordinates are image pixels with depth: x right, y down, z away from the camera (larger z = farther), as in
MediaPipe's landmarks and :mod:`mien.heads.face3d`'s ``scale · R · X + translation``. The light comes from near
the camera (:data:`LIGHT`) unless given.
"""

from __future__ import annotations

import cv2
import numpy as np

MESH_COLOR = (200, 200, 215)
"""Default RGB albedo of the shaded mesh."""
LIGHT = (0.3, 0.4, 1.0)
"""Default direction the light travels (from the camera, slightly from the upper left of the image)."""
AMBIENT = 0.15
"""Ambient share of the shading (the rest is Lambertian)."""
SUBPIXEL = 4
"""Fractional bits of the vertex coordinates passed to OpenCV (1/16 px)."""


def vertex_normals(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Unit vertex normals: area-weighted sums of the normals of the triangles around each vertex.

    Args:
        vertices: (V, 3) float; triangles: (F, 3) int, counter-clockwise seen from outside in a right-handed
            frame (:class:`mien.models.face3d.FaceModel`).

    Returns:
        float64 (V, 3) unit normals pointing outward (zero for vertices in no triangle).
    """
    v = np.asarray(vertices, np.float64)
    tri = np.asarray(triangles)
    fn = np.cross(v[tri[:, 1]] - v[tri[:, 0]], v[tri[:, 2]] - v[tri[:, 0]])  # length = 2 × area
    n = np.zeros_like(v)
    for k in range(3):
        np.add.at(n, tri[:, k], fn)
    norm = np.linalg.norm(n, axis=1, keepdims=True)
    return np.divide(n, norm, out=np.zeros_like(n), where=norm > 0)


def draw_mesh(image: np.ndarray, vertices: np.ndarray, triangles: np.ndarray, *, color=MESH_COLOR,
              light: np.ndarray | None = None, alpha: float = 1.0, cull: bool = True) -> np.ndarray:
    """Draw a shaded mesh onto an image, in place.

    Each visible triangle is filled with one colour (``color`` × (ambient + diffuse) at the mean of its three
    vertex intensities, Lambert's cosine law on the vertex normals) in order of decreasing mean depth, so near
    triangles cover far ones (painter's algorithm; exact for a face mesh seen from outside).

    Args:
        image: (H, W, 3) uint8 RGB, modified in place.
        vertices: (V, 3) pixel coordinates x, y and depth z (larger = farther).
        triangles: (F, 3) int vertex indices, counter-clockwise seen from outside in a right-handed frame.
        color: RGB albedo 0–255. light: (3,) direction the light travels (default :data:`LIGHT`).
        alpha: opacity of the mesh in [0, 1] (1: opaque; below 1 the mesh is blended over the image).
        cull: skip triangles facing away from the camera.

    Returns:
        ``image``.

    Raises:
        ValueError: wrong shapes.
    """
    v = np.asarray(vertices, np.float64)
    tri = np.asarray(triangles, np.int64)
    if image.ndim != 3 or image.shape[2] != 3 or v.ndim != 2 or v.shape[1] != 3 or tri.ndim != 2:
        raise ValueError(f"need image (H, W, 3), vertices (V, 3), triangles (F, 3); got {image.shape}, "
                         f"{v.shape}, {tri.shape}")
    if not np.isfinite(v).all():
        return image
    light = np.array(LIGHT) if light is None else np.asarray(light, np.float64)
    light = light / np.linalg.norm(light)
    n = vertex_normals(v, tri)
    lambert = np.clip(-(n @ light), 0.0, 1.0)  # normals facing the light: n · (−light) > 0
    shade = AMBIENT + (1 - AMBIENT) * lambert[tri].mean(1)
    if cull:
        # image frame (x right, y down, z away) is right-handed, so an outward normal facing the camera has z < 0
        fn_z = np.cross(v[tri[:, 1]] - v[tri[:, 0]], v[tri[:, 2]] - v[tri[:, 0]])[:, 2]
        keep = fn_z < 0
        tri, shade = tri[keep], shade[keep]
    order = np.argsort(-v[tri].mean(1)[:, 2], kind="stable")
    pts = np.round(v[:, :2] * (1 << SUBPIXEL)).astype(np.int32)
    target = image if alpha >= 1 else image.copy()
    base = np.asarray(color, np.float64)
    for f in order:
        c = tuple(int(x) for x in np.clip(base * shade[f], 0, 255))
        cv2.fillConvexPoly(target, pts[tri[f]], c, lineType=cv2.LINE_AA, shift=SUBPIXEL)
    if alpha < 1:
        cv2.addWeighted(target, alpha, image, 1 - alpha, 0, dst=image)
    return image


def render_mesh(size: tuple[int, int], vertices: np.ndarray, triangles: np.ndarray, *,
                background=(0, 0, 0), **kw) -> np.ndarray:
    """The shaded mesh alone on a ``background`` image of ``size`` = (H, W): uint8 (H, W, 3) RGB
    (:func:`draw_mesh` keyword arguments apply)."""
    img = np.empty((*size, 3), np.uint8)
    img[:] = np.asarray(background, np.uint8)
    return draw_mesh(img, vertices, triangles, **kw)
