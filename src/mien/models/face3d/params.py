"""Parameters a learned 3-D face encoder regresses from one crop (:class:`Face3DParams`), their orthographic
projection onto the crop (:func:`project`) and the differentiable geometry render (:func:`render_geometry`).

Camera convention (SMIRK/TEASER's orthographic camera, in mien's frame): a model-frame point X (the face
model's units, OpenCV axes: x right, y down, z away) is rotated about the model origin and scaled::

    n = s · R(rotation) · X + (tx, ty, 0)          # crop-normalised coordinates: x, y ∈ [−1, 1] span the crop
    pixel = (n_xy + 1) · S / 2 − 0.5              # pixel centres at integers 0 … S−1 (OpenCV)

so ``camera = (s, tx, ty)`` with s in crop half-widths per model unit; depth n_z is in the same normalised units
(larger = farther).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from mien.models.face3d.base import FaceModel, axis_angle_to_matrix
from mien.models.face3d.raster import soft_rasterize, vertex_normals_torch

__all__ = ["Face3DParams", "LIGHT", "landmarks_px", "project", "render_geometry", "to_pixels"]

LIGHT = (0.3, 0.4, 1.0)
"""Direction the light travels for :func:`render_geometry` (from the camera, slightly from the upper left),
the same as :data:`mien.viz.mesh.LIGHT`."""
AMBIENT = 0.15


@dataclass
class Face3DParams:
    """What a 3-D face encoder regresses from a crop (all float32 tensors, batch first).

    Attributes:
        shape: (B, S) identity coefficients of the encoder's :class:`~mien.models.face3d.FaceModel` (its first S).
        expression: (B, E) expression coefficients (the model's first E).
        jaw: (B, 3) jaw axis-angle, radians, model frame (``jaw[:, 0] > 0`` opens the mouth).
        eyelids: (B, 2) closure (subject's left, right), 0 = the mean opening, 1 = closed; in [0, 1].
        rotation: (B, 3) head axis-angle (radians) from the model frame to the camera frame (OpenCV axes).
        camera: (B, 3) orthographic camera ``(s, tx, ty)``: crop half-widths per model unit, and the translation
            in crop-normalised coordinates (x, y ∈ [−1, 1] span the crop; see the module docstring).
        tokens: (B, N, D) TEASER appearance tokens (N scales, token 0 the coarsest), None for SMIRK encoders.
    """

    shape: torch.Tensor
    expression: torch.Tensor
    jaw: torch.Tensor
    eyelids: torch.Tensor
    rotation: torch.Tensor
    camera: torch.Tensor
    tokens: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.expression.shape[0])

    def replace(self, **kw) -> Face3DParams:
        """A copy with some fields replaced (e.g. ``p.replace(expression=other.expression)``)."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d.update(kw)
        return Face3DParams(**d)

    def detach(self) -> Face3DParams:
        """All tensors detached."""
        return Face3DParams(**{f.name: (None if getattr(self, f.name) is None else getattr(self, f.name).detach())
                               for f in fields(self)})

    def __getitem__(self, i) -> Face3DParams:
        """Rows ``i`` (slice, index tensor) of every field."""
        return Face3DParams(**{f.name: (None if getattr(self, f.name) is None else getattr(self, f.name)[i])
                               for f in fields(self)})

    def as_dict(self) -> dict[str, torch.Tensor]:
        """Fields as a dict (``tokens`` omitted when None)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}


def project(face_model: FaceModel, params: Face3DParams) -> tuple[torch.Tensor, torch.Tensor]:
    """Posed vertices in crop-normalised coordinates.

    Args:
        face_model: the model the coefficients belong to.
        params: :class:`Face3DParams` (B faces).

    Returns:
        (normalised (B, V, 3): x, y ∈ [−1, 1] over the crop, z depth in the same units, larger = farther;
        model-frame vertices (B, V, 3) before the pose), differentiable in every field.
    """
    verts = face_model.vertices(params.shape, params.expression, params.jaw, params.eyelids)
    R = axis_angle_to_matrix(params.rotation)
    s, t = params.camera[:, :1, None], params.camera[:, 1:]
    n = s * torch.einsum("bij,bvj->bvi", R, verts)
    n = n + torch.cat([t, torch.zeros_like(t[:, :1])], 1)[:, None]
    return n, verts


def to_pixels(normalised: torch.Tensor, size: int) -> torch.Tensor:
    """Crop-normalised x, y (…, 2) → pixel coordinates of an S-pixel crop (centres at integers)."""
    return (normalised[..., :2] + 1) * (size / 2) - 0.5


def landmarks_px(face_model: FaceModel, params: Face3DParams, size: int) -> torch.Tensor:
    """MediaPipe landmarks of the reconstructed faces in crop pixels.

    Returns:
        (B, 478, 3) float: x, y crop px (centres at integers), z crop-normalised depth (larger = farther); rows of
        landmarks the model does not embed are NaN (FLAME embeds 105).
    """
    n, _ = project(face_model, params)
    lm = face_model.landmarks(n)
    out = n.new_full((len(n), 478, 3), float("nan"))
    ids = torch.as_tensor(face_model.embedding.landmark_ids, device=n.device)
    out[:, ids] = torch.cat([to_pixels(lm, size), lm[..., 2:]], -1)
    return out


def render_geometry(face_model: FaceModel, params: Face3DParams, size: int, *, sigma: float = 0.5,
                    gamma: float = 1e-2, light=LIGHT, albedo: float = 0.8) -> dict[str, torch.Tensor]:
    """Differentiable grey Lambertian render of the posed face (SMIRK's "rendered_img"), with normals and depth.

    Soft rasterisation (:func:`mien.models.face3d.raster.soft_rasterize`) of the front-facing triangles; shading
    per vertex = albedo · (ambient + (1 − ambient) · max(0, n · −light)), interpolated (Gouraud).

    Args:
        face_model: the coefficients' model (its ``triangles``).
        params: :class:`Face3DParams` of B faces (camera in crop-normalised units).
        size: S, crop side in pixels.
        sigma: edge blur σ in px² (0.5 ≈ 1-px soft band). gamma: depth-softmax temperature.
        light: (3,) direction the light travels (camera frame). albedo: grey level in [0, 1].

    Returns:
        dict of (B, ·, S, S) float32 tensors: ``shaded`` (3 channels, [0, 1], 0 outside), ``normals`` (3, unit
        outward normals in the camera frame, 0 outside), ``depth`` (1, crop-normalised z, 0 outside), ``mask``
        (1, soft silhouette in [0, 1]); every one differentiable in the parameters.
    """
    n, _ = project(face_model, params)
    tri = torch.as_tensor(face_model.triangles, dtype=torch.long, device=n.device)
    normals = vertex_normals_torch(n, tri)
    li = torch.as_tensor(light, dtype=n.dtype, device=n.device)
    li = li / li.norm()
    lambert = (-(normals * li).sum(-1, keepdim=True)).clamp(0, 1)
    shade = albedo * (AMBIENT + (1 - AMBIENT) * lambert)
    attrs = torch.cat([shade.expand(-1, -1, 3), normals, n[..., 2:]], -1)
    pix = torch.cat([to_pixels(n, size), n[..., 2:]], -1)
    img, mask = soft_rasterize(pix, tri, attrs, size, sigma=sigma, gamma=gamma)
    nrm = img[:, 3:6]
    nrm = nrm / nrm.norm(dim=1, keepdim=True).clamp_min(1e-6) * (mask > 1e-3)
    return {"shaded": img[:, :3].clamp(0, 1), "normals": nrm, "depth": img[:, 6:7] * mask, "mask": mask}
