"""The learned variant of the ``face3d`` head: ``mien analyze --face3d --face3d-encoder DIR`` regresses the 3-D
face from each face's crop with a SMIRK/TEASER encoder exported by ``mien export face3d``
(:func:`mien.models.face3d.load_face3d_encoder`) instead of fitting it to the landmarks.

Same columns as :class:`~mien.heads.face3d.Face3DHead` (``face3d_shape`` is then per frame, not per track),
plus ``face3d_camera`` (the encoder's orthographic crop camera); the pose columns are mapped from the crop to
image pixels (:func:`mien.models.face3d.crop_camera.camera_to_image`), and ``face3d_residual`` is the RMS
distance of the encoder's landmarks to MediaPipe's. ``--face3d-smooth`` One Euro-filters coefficients and pose
per track as for the fit.
"""

from __future__ import annotations

import os

import numpy as np

from mien.errors import InputError
from mien.heads.base import file_info
from mien.heads.face3d import Face3DHead, smooth_fit
from mien.models.registry import InputContract
from mien.results.result import ColumnSpec


class Face3DEncoderHead(Face3DHead):
    """Per-face learned 3-D face regression (see the module docstring).

    Args:
        encoder: a face3d export folder (``config.json`` + ``model.safetensors``).
        smooth: One Euro-filter coefficients and pose per track.
        device: torch device.

    Raises:
        InputError: the folder is not a face3d export.
    """

    name = "face3d"
    backend = "torch"

    def __init__(self, encoder: str | os.PathLike, smooth: bool = False, device: str = "cpu"):
        import torch

        from mien.models import face3d

        self.path = os.fspath(encoder)
        try:
            self.enc = face3d.load_face3d_encoder(self.path, device=device)
        except (OSError, KeyError, ValueError, RuntimeError) as e:
            raise InputError(self.path, f"not a face3d encoder export ({str(e).splitlines()[0]})") from None
        self.model = self.enc.face_model
        self.files = [os.path.join(self.path, "model.safetensors")]
        self.smooth = smooth
        self.unit = self.model.units
        self.device = device
        self.size = int(self.enc.size)
        self.contract = InputContract(self.size, "0-1", crop=self.enc.crop, landmark_scheme="mediapipe478")
        with torch.no_grad():
            ref = self.enc(torch.zeros(1, 3, self.size, self.size, device=device))
        self.n_shape, self.n_expression = ref.shape.shape[1], ref.expression.shape[1]
        self._torch = torch

    def columns(self) -> list[ColumnSpec]:
        cols = super().columns()
        S, E = self.n_shape, self.n_expression
        out = []
        for c in cols:
            if c.name == "face3d_shape":
                c = ColumnSpec(c.name, c.dtype, (S,), c.unit, f"{self.model.name} identity coefficients per frame "
                               "(the learned encoder's first S)")
            elif c.name == "face3d_expression":
                c = ColumnSpec(c.name, c.dtype, (E,), c.unit, f"{self.model.name} expression coefficients per "
                               "frame (the learned encoder's first E)")
            elif c.name == "face3d_residual":
                c = ColumnSpec(c.name, c.dtype, (), "px", "RMS image-plane distance of the encoder's landmarks to "
                               "MediaPipe's (468 mesh points)")
            out.append(c)
        out.append(ColumnSpec("face3d_camera", "float32", (3,), "", "the encoder's orthographic crop camera (s, "
                              "tx, ty): crop half-widths per model unit and crop-normalised translation "
                              "(mien.models.face3d.params)"))
        return out

    def __call__(self, crops, landmarks, **inputs) -> dict[str, np.ndarray]:
        """Encode B crops (B, S, S, 3) uint8 → the :meth:`columns` values of B rows."""
        from mien.models.face3d.crop_camera import crop_affine

        lm = np.asarray(landmarks, np.float64)
        x = self._torch.as_tensor(np.asarray(crops)).permute(0, 3, 1, 2).float().div(255.0).to(self.device)
        with self._torch.no_grad():
            p = self.enc(x)
            X = self.model.vertices(p.shape, p.expression, p.jaw, p.eyelids)
            mlm = self.model.landmarks(X).cpu().numpy().astype(np.float64)
        boxes = np.concatenate([lm[:, :, :2].min(1), lm[:, :, :2].max(1)], 1)
        A = np.stack([crop_affine(None, self.enc.crop, self.size, b, m)[1] for b, m in zip(boxes, lm, strict=True)])
        from mien.models.face3d.crop_camera import camera_to_image

        pose = camera_to_image(p.rotation.cpu().numpy(), p.camera.cpu().numpy(), A, self.size)
        posed = pose["scale"][:, None, None] * np.einsum("nij,nkj->nki", pose["rotation"], mlm) + pose["translation"][
            :, None]
        ids = self.model.embedding.landmark_ids
        keep = ids < 468
        err = np.linalg.norm(posed[:, keep, :2] - lm[:, ids[keep], :2], axis=-1)
        out = {"face3d_shape": p.shape, "face3d_expression": p.expression, "face3d_jaw": p.jaw,
               "face3d_eyelids": p.eyelids, "face3d_rotation": pose["rotation"], "face3d_scale": pose["scale"],
               "face3d_translation": pose["translation"], "face3d_residual": np.sqrt((err ** 2).mean(1)),
               "face3d_camera": p.camera}
        return {k: np.ascontiguousarray(v.cpu().numpy() if hasattr(v, "cpu") else v, np.float32)
                for k, v in out.items()}

    def finish(self, columns: dict[str, np.ndarray], face_id: np.ndarray) -> dict[str, np.ndarray]:
        """With ``smooth``: One Euro-filter each track's coefficients and pose (rows sorted by frame)."""
        if not self.smooth:
            return {}
        out = {c.name: columns[c.name].copy() for c in self.columns()}
        for fid in np.unique(face_id):
            m = np.nonzero(face_id == fid)[0]
            if len(m) > 1:
                smooth_fit(out, m, columns["t_sec"][m])
        return out

    def model_info(self) -> dict:
        return file_info(f"face3d-encoder:{os.path.basename(os.path.normpath(self.path))}", *self.files)

    def meta(self) -> dict:
        info = {"model": self.model.name, "units": self.unit, "n_shape": self.n_shape,
                "n_expression": self.n_expression, "n_vertices": self.model.n_vertices,
                "fit": {"method": "learned encoder (SMIRK/TEASER)", "encoder": self.path, "crop": self.enc.crop,
                        "size": self.size}}
        if self.smooth:
            from mien.face.smoothing import smoothing_meta
            from mien.heads.face3d import FACE3D_SMOOTHING

            info["smoothing"] = smoothing_meta(FACE3D_SMOOTHING)
        return {"face3d": info}
