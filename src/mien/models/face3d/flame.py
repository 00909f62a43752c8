"""FLAME (Li et al. 2017; FLAME 2020 release) loaded from the user's ``generic_model.pkl`` — never shipped.

FLAME's licence forbids redistribution and commercial use; users register at https://flame.is.tue.mpg.de,
download ``generic_model.pkl`` themselves and pass its path (``--face-model flame:/path/generic_model.pkl``).
The pickle holds chumpy objects; :func:`load_flame` reads it **without chumpy** (unmaintained, broken on
recent numpy) through a restricted unpickler that only admits numpy arrays, scipy sparse matrices (rebuilt
with numpy) and chumpy ``Ch`` leaves (their ``x`` array); any other global is refused.

Geometry (:class:`FlameModel`): ``v = v_template + shapedirs · [shape, expression]`` (FLAME 2020: 300 shape +
100 expression columns), plus pose correctives ``posedirs · (R_j − I)`` of the four non-root joints and
linear-blend skinning over FLAME's 5 joints (root, neck, jaw, left eye, right eye; joints regressed from the
shaped mesh by ``J_regressor``). Only the jaw is driven (``jaw`` axis-angle); root, neck and eyes stay at rest
(head pose is the fit's similarity transform). Eyelids: FLAME has none; pass SMIRK-style per-eye eyelid
blendshapes (``(V, 3)`` each) to use them, otherwise ``eyelids`` has no effect.

Frame: the file's FLAME frame (x subject's left, y up, z toward the viewer, metres) is turned 180° about x
into mien's OpenCV orientation (x image-right, y down, z away); units stay metres (``units = "m"``). Joint
rotations given in mien's frame are conjugated back for the pose correctives, so the geometry is FLAME's.
"""

from __future__ import annotations

import importlib
import os
import pickle
from pathlib import Path

import numpy as np
import torch

from mien.errors import InputError
from mien.models.face3d.base import FaceModel, LandmarkEmbedding, as_tensor, axis_angle_to_matrix

FLIP = np.array([1.0, -1.0, -1.0])  # FLAME (y up, z to viewer) ↔ OpenCV (y down, z away)
REQUIRED = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f")


class _ChumpyStandIn:
    """Replaces any chumpy class while unpickling; keeps the pickled state."""

    def __setstate__(self, state):
        self.state = state

    def to_array(self) -> np.ndarray:
        state = getattr(self, "state", None)
        if isinstance(state, dict) and "x" in state:
            x = state["x"]
            return x.to_array() if isinstance(x, _ChumpyStandIn) else np.asarray(x)
        raise ValueError(f"chumpy expression {type(self).__name__} cannot be evaluated without chumpy")


class _SparseStandIn:
    """Replaces scipy.sparse csc/csr matrices while unpickling; densified with numpy."""

    kind = "csc"

    def __setstate__(self, state):
        self.state = state

    def to_array(self) -> np.ndarray:
        s = self.state
        shape = tuple(s.get("_shape", s.get("shape")))
        data, indices, indptr = np.asarray(s["data"]), np.asarray(s["indices"]), np.asarray(s["indptr"])
        out = np.zeros(shape, data.dtype)
        major = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
        if self.kind == "csc":
            out[indices, major] = data
        else:
            out[major, indices] = data
        return out


class _CsrStandIn(_SparseStandIn):
    kind = "csr"


def _numpy_global(name: str):
    for mod in ("numpy._core.multiarray", "numpy.core.multiarray"):
        try:
            return getattr(importlib.import_module(mod), name)
        except (ImportError, AttributeError):
            continue
    raise pickle.UnpicklingError(f"numpy lacks {name}")


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if module.split(".")[0] == "chumpy":
            return type(name, (_ChumpyStandIn,), {})
        if module.startswith("scipy.sparse") and name in ("csc_matrix", "csr_matrix"):
            return _SparseStandIn if name == "csc_matrix" else _CsrStandIn
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name in ("_reconstruct", "scalar"):
            return _numpy_global(name)
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        if module in ("copy_reg", "copyreg") and name == "_reconstructor":
            import copyreg

            return copyreg._reconstructor
        if module in ("__builtin__", "builtins") and name in ("object", "set", "frozenset"):
            return {"object": object, "set": set, "frozenset": frozenset}[name]  # chumpy keeps sets of names
        if module == "_codecs" and name == "encode":
            import codecs

            return codecs.encode
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a FLAME model file")


def _array(x) -> np.ndarray:
    return x.to_array() if isinstance(x, (_ChumpyStandIn, _SparseStandIn)) else np.asarray(x)


class FlameModel(FaceModel):
    """FLAME as a :class:`FaceModel` (see the module docstring). Build it with :func:`load_flame`."""

    name = "flame"
    units = "m"

    def __init__(self, arrays: dict[str, np.ndarray], n_shape: int, embedding: LandmarkEmbedding,
                 eyelids: np.ndarray | None = None):
        self.arrays = arrays
        k = arrays["shapedirs"].shape[-1]
        self.n_shape = n_shape
        self.n_expression = k - n_shape
        self.triangles = arrays["f"].astype(np.int64)
        self.embedding = embedding
        v = arrays["v_template"].shape[0]
        self.eyelid_basis = np.zeros((2, v, 3), np.float32) if eyelids is None else eyelids.astype(np.float32)
        self.parents = arrays["kintree_table"][0].astype(np.int64)
        self.parents[0] = -1
        self._cache: dict = {}

    @property
    def n_vertices(self) -> int:
        return self.arrays["v_template"].shape[0]

    def _t(self, like):
        key = (like.device, like.dtype)
        if key not in self._cache:
            a = self.arrays
            t = {k: as_tensor(a[k], like) for k in ("v_template", "shapedirs", "posedirs", "weights")}
            t["eyelid_basis"] = as_tensor(self.eyelid_basis, like)
            jr = a["J_regressor"].astype(np.float64)  # joints are linear in the coefficients: precompute
            t["J_template"] = as_tensor(jr @ a["v_template"], like)
            t["J_dirs"] = as_tensor(np.einsum("jv,vck->jck", jr, a["shapedirs"]), like)
            self._cache[key] = t
        return self._cache[key]

    def _vertices(self, shape, expression, jaw, eyelids, idx: torch.Tensor | None = None):
        """Vertices (all, or those in ``idx``): blendshapes, jaw pose correctives, LBS."""
        t = self._t(shape)
        sel = (lambda x: x) if idx is None else (lambda x: x[idx])  # noqa: E731
        b = shape.shape[0]
        coeffs = torch.cat([shape, expression], 1)
        v = sel(t["v_template"]) + torch.einsum("bk,vck->bvc", coeffs, sel(t["shapedirs"]))
        joints = t["J_template"] + torch.einsum("bk,jck->bjc", coeffs, t["J_dirs"])  # = J_regressor · v_shaped
        v = v + torch.einsum("bk,kvc->bvc", eyelids, t["eyelid_basis"] if idx is None else t["eyelid_basis"][:, idx])
        n_j = len(self.parents)
        pose = shape.new_zeros((b, n_j, 3))
        pose[:, 2] = jaw  # FLAME joints: 0 root, 1 neck, 2 jaw, 3 left eye, 4 right eye
        R = axis_angle_to_matrix(pose)  # (B, J, 3, 3) in mien's frame
        flip = torch.diag(as_tensor(FLIP, shape))
        R_file = flip @ R @ flip  # the same rotations in FLAME's frame, for the correctives
        eye = torch.eye(3, dtype=shape.dtype, device=shape.device)
        feat = (R_file[:, 1:] - eye).reshape(b, -1)
        dirs = sel(t["posedirs"])
        v = v + (feat @ dirs.reshape(-1, dirs.shape[-1]).T).reshape(b, -1, 3) @ flip  # correctives: FLAME frame
        # Kinematic chain: world transforms of every joint, then remove the rest pose.
        rots, trans = [R[:, 0]], [joints[:, 0]]
        for j in range(1, n_j):
            p = int(self.parents[j])
            rots.append(rots[p] @ R[:, j])
            trans.append(trans[p] + (rots[p] @ (joints[:, j] - joints[:, p])[..., None])[..., 0])
        G_R = torch.stack(rots, 1)
        G_t = torch.stack(trans, 1) - (G_R @ joints[..., None])[..., 0]
        w = sel(t["weights"])
        A_R = torch.einsum("vj,bjkl->bvkl", w, G_R)
        A_t = torch.einsum("vj,bjk->bvk", w, G_t)
        return (A_R @ v[..., None])[..., 0] + A_t

    def jacobian(self, theta: np.ndarray, n_shape: int, n_expression: int) -> tuple[np.ndarray, np.ndarray]:
        """Landmarks (B, L, 3) and forward-difference derivatives (B, P, L, 3), float64, computed on the
        embedded vertices only (θ = [shape[:n_shape], expression[:n_expression], jaw, eyelids])."""
        S, E = n_shape, n_expression
        e = self.embedding
        used, inv = np.unique(e.vertex_ids, return_inverse=True)
        th = torch.as_tensor(theta, dtype=torch.float64)
        b, P = th.shape
        eps = 1e-5
        pert = torch.cat([th, (th[:, None] + eps * torch.eye(P, dtype=th.dtype)).reshape(-1, P)])
        zs = pert.new_zeros((len(pert), self.n_shape - S))
        ze = pert.new_zeros((len(pert), self.n_expression - E))
        with torch.no_grad():
            v = self._vertices(torch.cat([pert[:, :S], zs], 1), torch.cat([pert[:, S:S + E], ze], 1),
                               pert[:, S + E:S + E + 3], pert[:, S + E + 3:], torch.as_tensor(used))
        v = v.numpy()[:, inv.reshape(e.vertex_ids.shape)]  # (N, L, 3, 3)
        x = (v * e.barycentric[None, ..., None]).sum(-2)
        x0 = x[:b]
        return x0, (x[b:].reshape(b, P, *x0.shape[1:]) - x0[:, None]) / eps


def _read_embedding(path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(MediaPipe ids (L,), triangle ids (L,), barycentric (L, 3)) from FLAME's landmark-embedding ``.npz``."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            faces, bary, ids = z["lmk_face_idx"], z["lmk_b_coords"], z["landmark_indices"]
    except Exception as e:
        raise InputError(path, f"not a FLAME MediaPipe landmark embedding (.npz with lmk_face_idx, lmk_b_coords, "
                               f"landmark_indices): {type(e).__name__}") from None
    return np.asarray(ids, np.int64).ravel(), np.asarray(faces, np.int64).ravel(), np.asarray(bary, np.float32)


def load_flame(path: str | os.PathLike, landmark_embedding: str | os.PathLike | None = None, *,
               n_shape: int = 300, eyelids: tuple[np.ndarray, np.ndarray] | None = None) -> FlameModel:
    """Load a user-supplied FLAME model without chumpy.

    Args:
        path: FLAME ``generic_model.pkl`` (keys v_template (V, 3), shapedirs (V, 3, K), posedirs (V, 3, 36),
            J_regressor (5, V) sparse, weights (V, 5), kintree_table (2, 5), f (F, 3)).
        landmark_embedding: FLAME's ``mediapipe_landmark_embedding.npz`` (``lmk_face_idx`` (L,) triangles,
            ``lmk_b_coords`` (L, 3), ``landmark_indices`` (L,) MediaPipe indices; L = 105 in the official
            file). None: no landmarks (the model cannot be fitted to landmarks).
        n_shape: shapedirs columns that are identity (FLAME 2020: 300); the rest are expression.
        eyelids: optional (left, right) eyelid blendshapes, (V, 3) each, in FLAME's file frame and units.

    Returns:
        :class:`FlameModel` (float32, mien's OpenCV orientation, metres).

    Raises:
        InputError: missing file, not a pickle, a disallowed global, missing keys or inconsistent shapes (one
            line naming the file).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "FLAME model file not found")
    try:
        with open(path, "rb") as f:
            raw = _RestrictedUnpickler(f, encoding="latin1").load()
    except Exception as e:  # UnpicklingError, EOFError, ValueError …
        raise InputError(path, f"not a FLAME model pickle ({type(e).__name__}: {str(e).splitlines()[0][:120]})") from None
    if not isinstance(raw, dict) or any(k not in raw for k in REQUIRED):
        have = sorted(raw) if isinstance(raw, dict) else type(raw).__name__
        raise InputError(path, f"not a FLAME model: needs keys {list(REQUIRED)}, has {have}")
    try:
        a = {k: _array(raw[k]) for k in REQUIRED}
    except ValueError as e:
        raise InputError(path, str(e)) from None
    v = a["v_template"].shape[0]
    ok = (a["v_template"].shape == (v, 3) and a["shapedirs"].shape[:2] == (v, 3) and a["posedirs"].shape[:2] == (v, 3)
          and a["J_regressor"].shape[1] == v and a["weights"].shape[0] == v
          and a["weights"].shape[1] == a["J_regressor"].shape[0] == a["kintree_table"].shape[1])
    if not ok or a["shapedirs"].shape[2] <= n_shape:
        raise InputError(path, f"inconsistent FLAME arrays (v_template {a['v_template'].shape}, shapedirs "
                               f"{a['shapedirs'].shape}, n_shape {n_shape})")
    arrays = {k: a[k].astype(np.float32) for k in ("v_template", "shapedirs", "posedirs", "J_regressor", "weights")}
    arrays["v_template"] = arrays["v_template"] * FLIP
    arrays["shapedirs"] = arrays["shapedirs"] * FLIP[None, :, None]
    arrays["kintree_table"] = a["kintree_table"].astype(np.int64)
    arrays["f"] = a["f"].astype(np.int64)
    if landmark_embedding is None:
        emb = LandmarkEmbedding(np.zeros(0, np.int64), np.zeros((0, 3), np.int64), np.zeros((0, 3), np.float32))
    else:
        ids, faces, bary = _read_embedding(landmark_embedding)
        if len(faces) != len(ids) or bary.shape != (len(ids), 3) or faces.max(initial=0) >= len(arrays["f"]) \
                or ids.max(initial=0) >= 478:
            raise InputError(landmark_embedding, "landmark embedding does not match the model (triangle or "
                                                 "MediaPipe index out of range, or inconsistent lengths)")
        emb = LandmarkEmbedding(ids, arrays["f"][faces], bary)  # triangle → its 3 vertex indices
    lids = None if eyelids is None else np.stack([np.asarray(e, np.float32) * FLIP for e in eyelids])
    return FlameModel(arrays, n_shape, emb, lids)
