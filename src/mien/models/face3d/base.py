"""One interface for parametric 3-D faces: :class:`FaceModel` and its MediaPipe :class:`LandmarkEmbedding`.

Every face model of :mod:`mien.models.face3d` (the built-in ``mien-face``, FLAME when the user brings it) maps
coefficients to vertices with the same call::

    verts = model.vertices(shape (B, S), expression (B, E), jaw (B, 3), eyelids (B, 2))   # -> (B, V, 3)
    lmk = model.landmarks(verts)                                                        # -> (B, L, 3)

Conventions shared by all models:

- **Frame**: the OpenCV camera orientation used by :func:`mien.face.geometry.canonical_face` — x toward the
  image's right for a face looking at the camera (the subject's left), y down, z away from the camera (into
  the head); right-handed. A frontal, upright face needs no rotation to be projected onto an image.
- **Units**: stated by :attr:`FaceModel.units` — centimetres for ``mien-face`` (MediaPipe's canonical face),
  metres for FLAME (its native unit, unchanged).
- **jaw**: axis-angle (radians) of the jaw joint in the model frame; ``jaw[:, 0] > 0`` opens the mouth
  (rotation about +x lowers the chin). **eyelids**: (subject's left, subject's right), 0 = the mean shape's
  opening, 1 = closed.
- Inputs may be torch tensors (differentiable, outputs on the same device/dtype) or numpy arrays (numpy out).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

N_MEDIAPIPE = 478  # 468 face-mesh points + 2 × 5 iris points (MediaPipe's refined landmarks)


@dataclass(frozen=True)
class LandmarkEmbedding:
    """Where MediaPipe landmarks lie on a model's surface (barycentric coordinates in triangles).

    Attributes:
        landmark_ids: int64 (L,) MediaPipe indices in [0, 478) that the model embeds (all 478 for
            ``mien-face``; FLAME's published MediaPipe embedding covers 105).
        vertex_ids: int64 (L, 3) vertex indices of the triangle holding each landmark.
        barycentric: float32 (L, 3) weights, rows sum to 1.
    """

    landmark_ids: np.ndarray
    vertex_ids: np.ndarray
    barycentric: np.ndarray

    @classmethod
    def identity(cls, n: int = N_MEDIAPIPE) -> LandmarkEmbedding:
        """Landmark i is vertex i (weights (1, 0, 0)), for i < n."""
        ids = np.arange(n, dtype=np.int64)
        bary = np.zeros((n, 3), np.float32)
        bary[:, 0] = 1.0
        return cls(ids, np.stack([ids, ids, ids], 1), bary)

    def is_identity(self) -> bool:
        """True when landmark i is vertex i for every i (the built-in model)."""
        n = len(self.landmark_ids)
        return bool((self.landmark_ids == np.arange(n)).all() and (self.vertex_ids[:, 0] == np.arange(n)).all()
                    and (self.barycentric[:, 0] == 1).all())

    def __len__(self) -> int:
        return len(self.landmark_ids)


def as_tensor(x, like: torch.Tensor | None = None, dtype=None) -> torch.Tensor:
    """``x`` as a torch tensor on ``like``'s device and dtype (float32 when neither is given)."""
    if like is not None:
        return torch.as_tensor(x, device=like.device, dtype=dtype or like.dtype)
    return torch.as_tensor(np.asarray(x), dtype=dtype or torch.float32)


def axis_angle_to_matrix(aa: torch.Tensor) -> torch.Tensor:
    """Rodrigues' formula, differentiable at 0.

    Args:
        aa: (..., 3) axis-angle vectors, radians.

    Returns:
        (..., 3, 3) rotation matrices, same dtype/device.
    """
    theta2 = (aa * aa).sum(-1, keepdim=True)
    theta = torch.sqrt(theta2 + 1e-12)
    k = aa / theta
    kx, ky, kz = k.unbind(-1)
    zero = torch.zeros_like(kx)
    K = torch.stack([zero, -kz, ky, kz, zero, -kx, -ky, kx, zero], -1).reshape(*aa.shape[:-1], 3, 3)
    s = torch.sin(theta)[..., None]
    c = torch.cos(theta)[..., None]
    eye = torch.eye(3, dtype=aa.dtype, device=aa.device).expand_as(K)
    # Small-angle branch keeps gradients finite: sinθ·K ≈ [aa]×, (1−cosθ)·K² ≈ ½[aa]×².
    small = (theta2 < 1e-8)[..., None]
    A = torch.stack([zero, -aa[..., 2], aa[..., 1], aa[..., 2], zero, -aa[..., 0],
                     -aa[..., 1], aa[..., 0], zero], -1).reshape(*aa.shape[:-1], 3, 3)
    big = eye + s * K + (1 - c) * (K @ K)
    return torch.where(small, eye + A + 0.5 * (A @ A), big)


class FaceModel:
    """A parametric face: coefficients → vertices, a triangle list and a MediaPipe landmark embedding.

    Subclasses set :attr:`name`, :attr:`units`, :attr:`n_shape`, :attr:`n_expression`, :attr:`triangles`,
    :attr:`embedding` and implement :meth:`_vertices` (torch in, torch out).

    Attributes:
        name: model name ("mien-face", "flame").
        units: "cm" or "m" (vertex coordinates).
        n_shape: S, identity coefficients.
        n_expression: E, expression coefficients.
        triangles: int64 (F, 3) vertex indices, counter-clockwise seen from outside in a right-handed frame.
        embedding: :class:`LandmarkEmbedding` of MediaPipe's landmarks.
    """

    name: str = ""
    units: str = ""
    n_shape: int = 0
    n_expression: int = 0
    triangles: np.ndarray
    embedding: LandmarkEmbedding

    @property
    def n_vertices(self) -> int:
        raise NotImplementedError

    def _vertices(self, shape: torch.Tensor, expression: torch.Tensor, jaw: torch.Tensor,
                  eyelids: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def vertices(self, shape=None, expression=None, jaw=None, eyelids=None, batch: int | None = None):
        """Vertices of faces.

        Args:
            shape: (B, S) identity coefficients (None: zeros). Fewer than S columns: the rest are 0.
            expression: (B, E) expression coefficients (None: zeros). Fewer than E columns: the rest are 0.
            jaw: (B, 3) jaw axis-angle, radians, model frame (None: closed, zeros).
            eyelids: (B, 2) (subject's left, right) eyelid closure, 0 = mean opening, 1 = closed (None: 0).
            batch: B when every argument is None (default 1).

        Returns:
            (B, V, 3) vertices in the model's frame and :attr:`units`; a torch tensor (differentiable in every
            argument) when any argument is a tensor, else float32 numpy.

        Raises:
            ValueError: inconsistent batch sizes or too many coefficients.
        """
        args = [shape, expression, jaw, eyelids]
        like = next((a for a in args if isinstance(a, torch.Tensor)), None)
        numpy_out = like is None
        sizes = {int(np.shape(a)[0]) for a in args if a is not None}
        if len(sizes) > 1:
            raise ValueError(f"face-model coefficients have different batch sizes: {sorted(sizes)}")
        b = sizes.pop() if sizes else (batch or 1)
        ref = like if like is not None else torch.zeros((), dtype=torch.float32)

        def prep(a, n, what):
            if a is None:
                return ref.new_zeros((b, n))
            t = as_tensor(a, ref) if not isinstance(a, torch.Tensor) else a.to(ref.dtype)
            if t.ndim != 2 or t.shape[1] > n:
                raise ValueError(f"{what} must be (B, ≤{n}), got {tuple(t.shape)}")
            if t.shape[1] < n:
                t = torch.cat([t, t.new_zeros((b, n - t.shape[1]))], 1)
            return t

        out = self._vertices(prep(shape, self.n_shape, "shape"), prep(expression, self.n_expression, "expression"),
                             prep(jaw, 3, "jaw"), prep(eyelids, 2, "eyelids"))
        return out.detach().cpu().numpy().astype(np.float32) if numpy_out else out

    def landmarks(self, vertices):
        """MediaPipe landmarks on the surface.

        Args:
            vertices: (B, V, 3) from :meth:`vertices` (torch or numpy).

        Returns:
            (B, L, 3) points of :attr:`embedding` (``embedding.landmark_ids`` says which MediaPipe index each
            row is), same type as the input.
        """
        e = self.embedding
        if e.is_identity():
            return vertices[:, : len(e)]
        if isinstance(vertices, torch.Tensor):
            bary = as_tensor(e.barycentric, vertices)
            return (vertices[:, torch.as_tensor(e.vertex_ids, device=vertices.device)] * bary[..., None]).sum(-2)
        v = np.asarray(vertices)
        return (v[:, e.vertex_ids] * e.barycentric[..., None]).sum(-2).astype(v.dtype)
