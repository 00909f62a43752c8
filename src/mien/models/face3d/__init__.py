"""Parametric 3-D faces: the built-in ``mien-face`` model, FLAME (user-supplied), landmark fitting.

::

    from mien.models.face3d import load_face_model, fit_landmarks
    model = load_face_model()                       # shipped mien-face (cm, OpenCV axes, 478 vertices)
    verts = model.vertices(shape, expression, jaw, eyelids)      # (B, 478, 3)
    fit = fit_landmarks(result.columns()["landmarks"], model)   # pose + coefficients per frame
    model, files = open_face_model("flame:/path/generic_model.pkl")   # or a .npz path, None = shipped
    save_mesh_sequence("out/", verts_T, model.triangles, frame=..., t_sec=..., obj=True, gltf=True)

Learned reconstruction (SMIRK / TEASER encoders and neural renderers, :mod:`mien.models.face3d.learned`)::

    enc = load_face3d_encoder(dir); p = enc(crop)            # Face3DParams (shape, expression, jaw, eyelids, …)
    img = load_face3d_renderer(dir).render(crop, p)         # neural reconstruction
    geo = render_geometry(enc.face_model, p, enc.size)      # differentiable shaded / normals / depth / mask

See :mod:`mien.models.face3d.base` for the shared conventions (frame, units, jaw and eyelid meaning).
"""

from mien.models.face3d.au import au_directions
from mien.models.face3d.base import FaceModel, LandmarkEmbedding
from mien.models.face3d.build import build_face_model, train_face_model
from mien.models.face3d.export import read_obj, save_mesh_sequence, write_gltf_morph, write_obj
from mien.models.face3d.fit import fit_landmarks, landmark_error
from mien.models.face3d.flame import FlameModel, load_flame
from mien.models.face3d.learned import (
    Face3DConfig,
    Face3DNet,
    Face3DRenderer,
    load_face3d,
    load_face3d_encoder,
    load_face3d_renderer,
    save_face3d,
)
from mien.models.face3d.mien_face import MienFaceModel, canonical_triangles, load_face_model
from mien.models.face3d.params import Face3DParams, landmarks_px, project, render_geometry
from mien.models.face3d.spec import open_face_model

__all__ = [
    "Face3DConfig",
    "Face3DNet",
    "Face3DParams",
    "Face3DRenderer",
    "load_face3d",
    "load_face3d_encoder",
    "load_face3d_renderer",
    "landmarks_px",
    "project",
    "render_geometry",
    "save_face3d",
    "FaceModel",
    "FlameModel",
    "LandmarkEmbedding",
    "MienFaceModel",
    "au_directions",
    "build_face_model",
    "canonical_triangles",
    "fit_landmarks",
    "landmark_error",
    "load_face_model",
    "load_flame",
    "open_face_model",
    "read_obj",
    "save_mesh_sequence",
    "train_face_model",
    "write_gltf_morph",
    "write_obj",
]
