"""Export fitted face-mesh sequences for animation tools: one ``.npz`` (vertices (T, V, 3), triangles, pose
per frame) and optionally one Wavefront ``.obj`` per frame."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mien.io.atomic import atomic_output


def write_obj(path: str | os.PathLike, vertices: np.ndarray, triangles: np.ndarray) -> Path:
    """Write one mesh as a Wavefront OBJ (``v x y z`` lines, then 1-based ``f a b c`` lines), atomically.

    Args:
        vertices: (V, 3) coordinates (every vertex is written, also those in no triangle, so vertex i of the
            file is vertex i of the model). triangles: (F, 3) 0-based indices.

    Returns:
        The path written.
    """
    v = np.asarray(vertices, np.float64)
    f = np.asarray(triangles, np.int64) + 1
    lines = [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in v] + [f"f {a} {b} {c}" for a, b, c in f]
    path = Path(path)
    with atomic_output(path) as tmp:
        Path(tmp).write_text("\n".join(lines) + "\n")
    return path


def read_obj(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read the vertices (V, 3) float64 and 0-based triangles (F, 3) int64 of an OBJ written by :func:`write_obj`."""
    v, f = [], []
    for line in Path(path).read_text().splitlines():
        parts = line.split()
        if parts and parts[0] == "v":
            v.append([float(x) for x in parts[1:4]])
        elif parts and parts[0] == "f":
            f.append([int(x.split("/")[0]) - 1 for x in parts[1:4]])
    return np.asarray(v, np.float64).reshape(-1, 3), np.asarray(f, np.int64).reshape(-1, 3)


def save_mesh_sequence(directory: str | os.PathLike, vertices: np.ndarray, triangles: np.ndarray, *,
                       frame: np.ndarray, t_sec: np.ndarray, face_id: np.ndarray | None = None,
                       rotation: np.ndarray | None = None, scale: np.ndarray | None = None,
                       translation: np.ndarray | None = None, units: str = "cm", obj: bool = False,
                       meta: dict | None = None) -> list[Path]:
    """Write a fitted mesh sequence.

    Files: ``DIR/mesh.npz`` with ``vertices`` (T, V, 3) float32 in the model frame and ``units`` (no head pose:
    expression, jaw, eyelids and identity only), ``triangles`` (F, 3) int32, ``frame`` (T,) int64, ``t_sec`` (T,)
    float64, ``face_id`` (T,) int32 and, when given, the pose that places each mesh in its image —
    ``rotation`` (T, 3, 3), ``scale`` (T,) px per unit, ``translation`` (T, 3) px (image point =
    scale · R · X + translation) — plus ``units`` and ``meta`` (JSON) strings; with ``obj`` also
    ``DIR/obj/frame_<frame>_face_<id>.obj`` per row (:func:`write_obj`).

    Args:
        directory: output folder (created).
        vertices: (T, V, 3); triangles: (F, 3); frame, t_sec, face_id: (T,) per row.

    Returns:
        The paths written (the ``.npz`` first).

    Raises:
        ValueError: inconsistent shapes.
    """
    import json

    v = np.asarray(vertices, np.float32)
    T = len(v)
    if v.ndim != 3 or v.shape[2] != 3 or len(frame) != T or len(t_sec) != T:
        raise ValueError(f"need vertices (T, V, 3) and frame/t_sec (T,), got {v.shape}, {len(frame)}, {len(t_sec)}")
    face_id = np.zeros(T, np.int32) if face_id is None else np.asarray(face_id, np.int32)
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    arrays = {"vertices": v, "triangles": np.asarray(triangles, np.int32), "frame": np.asarray(frame, np.int64),
              "t_sec": np.asarray(t_sec, np.float64), "face_id": face_id, "units": np.array(units),
              "meta": np.array(json.dumps(meta or {}, sort_keys=True))}
    for k, a in (("rotation", rotation), ("scale", scale), ("translation", translation)):
        if a is not None:
            arrays[k] = np.asarray(a, np.float32)
    npz = out / "mesh.npz"
    with atomic_output(npz) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
    paths = [npz]
    if obj:
        (out / "obj").mkdir(exist_ok=True)
        for i in range(T):
            paths.append(write_obj(out / "obj" / f"frame_{int(frame[i]):06d}_face_{int(face_id[i])}.obj", v[i],
                                   triangles))
    return paths
