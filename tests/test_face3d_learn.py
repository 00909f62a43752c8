"""Learned 3-D face reconstruction (issue 11, seed 5): soft rasteriser vs OpenCV, SMIRK/TEASER encoders and neural
renderers, the training task on real faces, export/load parity and the CLI."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

from mien.models.face3d import (  # noqa: E402
    Face3DParams,
    load_face3d,
    load_face3d_encoder,
    load_face3d_renderer,
    load_face_model,
    project,
    render_geometry,
)
from mien.models.face3d.encoders import default_camera  # noqa: E402
from mien.models.face3d.params import to_pixels  # noqa: E402
from mien.models.face3d.raster import soft_rasterize  # noqa: E402

pytestmark = [pytest.mark.usefixtures("torch_one_thread"),
              pytest.mark.filterwarnings("ignore:Found .* module\\(s\\) in eval mode"),
              pytest.mark.filterwarnings("ignore:LightningCLI's args parameter is intended"),
              pytest.mark.filterwarnings("ignore:.*isinstance\\(treespec, LeafSpec\\)")]
VIDEO = "videos/talking/face_1.mp4"


@pytest.fixture(scope="module")
def face_model():
    return load_face_model()


def _params(fm, b=2, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    cam = torch.tensor([default_camera(fm)] * b)
    cam[:, 0] *= scale
    return Face3DParams(torch.zeros(b, fm.n_shape), torch.randn(b, fm.n_expression, generator=g) * 0.3,
                        torch.zeros(b, 3), torch.zeros(b, 2),
                        torch.tensor([[0.0, 0.35, 0.0], [0.15, -0.25, 0.08]])[:b], cam)


def _opencv_silhouette(px: np.ndarray, tri: np.ndarray, size: int) -> np.ndarray:
    import cv2

    img = np.zeros((size, size), np.uint8)
    fz = np.cross(px[tri[:, 1]] - px[tri[:, 0]], px[tri[:, 2]] - px[tri[:, 0]])[:, 2]
    for f in tri[fz < 0]:
        cv2.fillConvexPoly(img, np.round(px[f, :2] * 16).astype(np.int32), 255, lineType=cv2.LINE_8, shift=4)
    return img > 0


# ---- rasteriser ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [64, 160])
def test_soft_silhouette_matches_opencv(face_model, size):
    """The soft silhouette's 0.5 level is OpenCV's filled mesh up to a 1-pixel band along its outline."""
    import cv2

    p = _params(face_model, scale=0.8)
    with torch.no_grad():
        geo = render_geometry(face_model, p, size)
        n, _ = project(face_model, p)
        px = torch.cat([to_pixels(n, size), n[..., 2:]], -1).numpy()
    for i in range(len(p)):
        hard = _opencv_silhouette(px[i], face_model.triangles, size)
        soft = geo["mask"][i, 0].numpy() > 0.5
        k = np.ones((3, 3), np.uint8)
        band = cv2.dilate(hard.astype(np.uint8), k).astype(bool) & ~cv2.erode(hard.astype(np.uint8), k).astype(bool)
        diff = soft != hard
        assert hard.sum() > 0.2 * size * size  # a real face-sized silhouette
        assert not (diff & ~band).any(), f"{(diff & ~band).sum()} pixels differ outside the 1-px band"
        assert diff.sum() < 0.5 * band.sum()
    # shading, normals and depth are where the mask is, and sane
    m = geo["mask"] > 0.5
    assert geo["shaded"].shape == (2, 3, size, size) and float(geo["shaded"].max()) <= 1.0
    nrm = geo["normals"].norm(dim=1, keepdim=True)[m]
    assert torch.allclose(nrm, torch.ones_like(nrm), atol=1e-3)
    assert float(geo["normals"][:, 2:3][m].mean()) < -0.5  # front faces look at the camera (−z)
    assert float(geo["depth"][geo["mask"] < 1e-4].abs().max()) < 1e-2  # background depth 0


def test_soft_rasteriser_gradients_at_edges(face_model):
    """Gradients of the silhouette reach the vertices on the outline (finite, non-zero) and match finite
    differences of the silhouette area under a change of camera scale."""
    size = 48
    p = _params(face_model, b=1)
    tri = torch.as_tensor(face_model.triangles)
    with torch.no_grad():
        n, _ = project(face_model, p)
    px = torch.cat([to_pixels(n, size), n[..., 2:]], -1).requires_grad_(True)
    _, sil = soft_rasterize(px, tri, px[..., 2:], size, sigma=0.5)
    target = torch.rand(1, 1, size, size, generator=torch.Generator().manual_seed(1))
    (sil * target).sum().backward()
    g = px.grad[0, :468, :2]
    assert torch.isfinite(px.grad).all()
    # the mesh's open edges (face outline, eye and mouth openings) lie on silhouette edges
    edges = np.sort(np.concatenate([face_model.triangles[:, [0, 1]], face_model.triangles[:, [1, 2]],
                                    face_model.triangles[:, [2, 0]]]), 1)
    uniq, count = np.unique(edges, axis=0, return_counts=True)
    outline = torch.as_tensor(np.unique(uniq[count == 1]))
    assert len(outline) > 30
    assert (g[outline].norm(dim=-1) > 1e-6).float().mean() > 0.8
    # d(area)/d(scale): autograd vs central differences
    cam = p.camera.clone().requires_grad_(True)

    def area(c):
        return render_geometry(face_model, p.replace(camera=c), size)["mask"].sum()

    a = area(cam)
    (d,) = torch.autograd.grad(a, cam)
    h = 1e-3 * float(cam[0, 0].detach())
    with torch.no_grad():
        up, dn = cam.clone(), cam.clone()
        up[0, 0] += h
        dn[0, 0] -= h
        fd = (area(up) - area(dn)) / (2 * h)
    assert float(d[0, 0]) > 0 and abs(float(d[0, 0]) - float(fd)) < 0.05 * abs(float(fd))


def test_soft_rasterize_bad_shapes():
    with pytest.raises(ValueError, match="px"):
        soft_rasterize(torch.zeros(1, 5, 2), torch.zeros(1, 3, dtype=torch.long), torch.zeros(1, 5, 1), 8)
