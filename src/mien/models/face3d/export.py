"""Export fitted face-mesh sequences for animation tools: one ``.npz`` (vertices (T, V, 3), triangles, pose
per frame), optionally one Wavefront ``.obj`` per frame and one glTF 2.0 ``.glb`` per track with morph targets
(``pygltflib``)."""

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
                       gltf: bool = False, meta: dict | None = None) -> list[Path]:
    """Write a fitted mesh sequence.

    Files: ``DIR/mesh.npz`` with ``vertices`` (T, V, 3) float32 in the model frame and ``units`` (no head pose:
    expression, jaw, eyelids and identity only), ``triangles`` (F, 3) int32, ``frame`` (T,) int64, ``t_sec`` (T,)
    float64, ``face_id`` (T,) int32 and, when given, the pose that places each mesh in its image —
    ``rotation`` (T, 3, 3), ``scale`` (T,) px per unit, ``translation`` (T, 3) px (image point =
    scale · R · X + translation) — plus ``units`` and ``meta`` (JSON) strings; with ``obj`` also
    ``DIR/obj/frame_<frame>_face_<id>.obj`` per row (:func:`write_obj`); with ``gltf`` also
    ``DIR/face_<id>.glb`` per track (:func:`write_gltf_morph`, needs ``pygltflib``).

    Args:
        directory: output folder (created).
        vertices: (T, V, 3); triangles: (F, 3); frame, t_sec, face_id: (T,) per row.

    Returns:
        The paths written (the ``.npz`` first).

    Raises:
        ValueError: inconsistent shapes. ImportError: ``gltf`` without pygltflib.
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
    if gltf:
        for fid in np.unique(face_id):
            m = face_id == fid
            write_gltf_morph(out / f"face_{int(fid)}.glb", v[m], triangles, np.asarray(t_sec)[m], units=units)
            paths.append(out / f"face_{int(fid)}.glb")
    if obj:
        (out / "obj").mkdir(exist_ok=True)
        for i in range(T):
            paths.append(write_obj(out / "obj" / f"frame_{int(frame[i]):06d}_face_{int(face_id[i])}.obj", v[i],
                                   triangles))
    return paths


GLTF_TARGETS = 32
"""Default number of morph targets of :func:`write_gltf_morph`."""


def write_gltf_morph(path: str | os.PathLike, vertices: np.ndarray, triangles: np.ndarray, t_sec: np.ndarray, *,
                     units: str = "cm", n_targets: int = GLTF_TARGETS) -> dict:
    """Write one face track as a binary glTF 2.0 (``.glb``) mesh with morph targets and a weights animation.

    The base mesh is the track's mean mesh; the morph targets are the principal components of the frames'
    deviations from it (SVD, up to ``n_targets``; a linear model's expression, eyelid and jaw motion of one
    sequence fits in few), and one animation channel plays each frame's weights at its time (linear
    interpolation) — the form Blender, three.js and game engines import as shape keys / blend shapes.
    Coordinates are converted to glTF's frame: metres, y up, z toward the viewer (a 180° turn about x of
    mien's x right, y down, z away), so triangle winding is kept.

    Needs ``pygltflib`` (``pip install pygltflib``).

    Args:
        path: output ``.glb`` (written atomically).
        vertices: (T, V, 3) one track's meshes in the model frame and ``units`` ("cm" or "m").
        triangles: (F, 3) vertex indices. t_sec: (T,) strictly increasing frame times, s.
        n_targets: most morph targets.

    Returns:
        dict: ``targets`` (K), ``explained`` (fraction of the deviations' energy the K targets keep),
        ``max_error`` (largest vertex error of the reconstruction, in ``units``).

    Raises:
        ImportError: pygltflib missing (message says how to install it). ValueError: bad shapes.
    """
    try:
        import pygltflib as g
    except ImportError:
        raise ImportError("glTF export needs pygltflib: pip install pygltflib") from None
    v = np.asarray(vertices, np.float64)
    t = np.asarray(t_sec, np.float64)
    if v.ndim != 3 or v.shape[2] != 3 or len(t) != len(v) or len(v) < 1:
        raise ValueError(f"need vertices (T, V, 3) and t_sec (T,), got {v.shape} and {t.shape}")
    scale = {"cm": 0.01, "m": 1.0}.get(units, 1.0)
    v = v * (scale * np.array([1.0, -1.0, -1.0]))
    T, V, _ = v.shape
    base = v.mean(0)
    dev = (v - base).reshape(T, -1)
    U, S, Vt = np.linalg.svd(dev, full_matrices=False)
    k = int(min(n_targets, (S > 1e-9 * max(S[0] if len(S) else 0, 1e-30)).sum()))
    targets = Vt[:k].reshape(k, V, 3)
    weights = U[:, :k] * S[:k]
    err = np.abs(weights @ Vt[:k] - dev).max() / scale if T else 0.0
    explained = float((S[:k] ** 2).sum() / max((S ** 2).sum(), 1e-30))

    blobs: list[bytes] = []
    views, accessors = [], []

    def add(arr: np.ndarray, comp: int, kind: str, target: int | None, minmax: bool = False) -> int:
        data = np.ascontiguousarray(arr).tobytes()
        offset = sum(len(b) for b in blobs)
        blobs.append(data + b"\0" * (-len(data) % 4))
        views.append(g.BufferView(buffer=0, byteOffset=offset, byteLength=len(data), target=target))
        acc = g.Accessor(bufferView=len(views) - 1, componentType=comp, count=len(arr), type=kind)
        if minmax:
            a2 = arr.reshape(len(arr), -1)
            acc.min, acc.max = a2.min(0).tolist(), a2.max(0).tolist()
        accessors.append(acc)
        return len(accessors) - 1

    pos = add(base.astype(np.float32), g.FLOAT, g.VEC3, g.ARRAY_BUFFER, True)
    idx = add(np.asarray(triangles, np.uint32).reshape(-1), g.UNSIGNED_INT, g.SCALAR, g.ELEMENT_ARRAY_BUFFER)
    tgt = [add(d.astype(np.float32), g.FLOAT, g.VEC3, g.ARRAY_BUFFER, True) for d in targets]
    prim = g.Primitive(attributes=g.Attributes(POSITION=pos), indices=idx,
                       targets=[{"POSITION": a} for a in tgt] or None)
    gltf = g.GLTF2(scene=0, scenes=[g.Scene(nodes=[0])], nodes=[g.Node(mesh=0, name="face")],
                   meshes=[g.Mesh(primitives=[prim], weights=[0.0] * k or None, name="face")])
    if k and T > 1:
        tin = add((t - t[0]).astype(np.float32), g.FLOAT, g.SCALAR, None, True)
        wout = add(weights.astype(np.float32).reshape(-1), g.FLOAT, g.SCALAR, None)
        gltf.animations = [g.Animation(name="expression", samplers=[g.AnimationSampler(input=tin, output=wout)],
                                       channels=[g.AnimationChannel(sampler=0, target=g.AnimationChannelTarget(
                                           node=0, path="weights"))])]
    gltf.accessors, gltf.bufferViews = accessors, views
    blob = b"".join(blobs)
    gltf.buffers = [g.Buffer(byteLength=len(blob))]
    gltf.set_binary_blob(blob)
    with atomic_output(path) as tmp:
        gltf.save_binary(str(tmp))
    return {"targets": k, "explained": explained, "max_error": float(err)}
