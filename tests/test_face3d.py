"""mien.models.face3d: the mien-face model, the landmark fit, the FLAME loader, the build on real frames."""

from __future__ import annotations

import pickle
import sys
import types

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from mien.errors import InputError  # noqa: E402
from mien.face.geometry import canonical_face  # noqa: E402
from mien.models.face3d import (  # noqa: E402
    au_directions,
    build_face_model,
    fit_landmarks,
    landmark_error,
    load_face_model,
    load_flame,
    train_face_model,
)
from mien.models.face3d.build import collect  # noqa: E402


@pytest.fixture(scope="module")
def model():
    return load_face_model()


def _rotation(pitch, yaw, roll):
    from mien.face.geometry import euler_to_rotation

    return euler_to_rotation(pitch, yaw, roll)


def test_shipped_model_shapes(model):
    assert model.units == "cm" and model.n_vertices == 478
    assert model.triangles.shape == (898, 3) and model.triangles.max() == 467
    assert len(model.embedding) == 478 and model.embedding.is_identity()
    v = model.vertices(np.zeros((2, 3)), np.zeros((2, model.n_expression)), np.zeros((2, 3)), np.zeros((2, 2)))
    assert v.shape == (2, 478, 3) and v.dtype == np.float32
    assert model.landmarks(v).shape == (2, 478, 3)
    assert 5 <= model.n_shape <= 50 and model.n_expression == 50


def test_zero_coefficients_give_the_canonical_mean(model):
    v = model.vertices(batch=1)[0]
    np.testing.assert_allclose(v, model.mean, atol=1e-6)
    np.testing.assert_allclose(v[:468], canonical_face(), atol=2e-3)  # float16 storage
    assert np.isfinite(v[468:]).all()


def test_bases_orthonormal_and_variance_decreasing(model):
    for basis, explained in ((model.shape_basis, model.shape_explained),
                             (model.expression_basis, model.expression_explained)):
        b = basis.reshape(len(basis), -1).astype(np.float64)
        np.testing.assert_allclose(b @ b.T, np.eye(len(b)), atol=1e-3)
        assert (np.diff(explained) <= 1e-6).all() and 0 < explained.sum() <= 1 + 1e-4


def test_vertices_are_differentiable(model):
    ex = torch.zeros(1, model.n_expression, requires_grad=True)
    jaw = torch.tensor([[0.1, 0.0, 0.0]], requires_grad=True)
    v = model.vertices(expression=ex, jaw=jaw)
    v[:, 152].sum().backward()  # chin
    assert torch.isfinite(ex.grad).all() and ex.grad.abs().sum() > 0
    assert jaw.grad[0, 0].abs() > 0
    # opening the jaw moves the lower lip down (+y) and leaves the forehead in place
    v0 = model.vertices(batch=1)
    v1 = model.vertices(jaw=np.array([[0.2, 0.0, 0.0]], np.float32))
    assert v1[0, 17, 1] > v0[0, 17, 1] + 0.2 and np.allclose(v1[0, 10], v0[0, 10])


def test_eyelids_close_the_eye(model):
    from mien.face.geometry import eye_aspect_ratio

    v0 = model.vertices(batch=1)
    v1 = model.vertices(eyelids=np.array([[1.0, 0.0]], np.float32))
    ear0, ear1 = eye_aspect_ratio(v0)[0], eye_aspect_ratio(v1)[0]
    assert ear1[0] < 0.5 * ear0[0] and abs(ear1[1] - ear0[1]) < 0.02  # left closes, right unchanged


def _synthetic(model, rng, b=6, n_s=5, n_e=8):
    sh = np.zeros((b, model.n_shape))
    sh[:, :n_s] = rng.normal(size=(b, n_s)) * model.shape_std[:n_s]
    ex = np.zeros((b, model.n_expression))
    ex[:, :n_e] = rng.normal(size=(b, n_e)) * model.expression_std[:n_e]
    jaw = np.zeros((b, 3))
    jaw[:, 0] = rng.uniform(0, 0.2, b)
    eyelids = rng.uniform(0, 0.6, (b, 2))
    x = model.vertices(sh, ex, jaw, eyelids).astype(np.float64)
    R = np.stack([_rotation(*rng.normal(0, 0.2, 3)) for _ in range(b)])
    s = rng.uniform(15, 30, b)
    t = rng.uniform(100, 400, (b, 3))
    y = s[:, None, None] * np.einsum("bij,bkj->bki", R, x) + t[:, None]
    return y, dict(shape=sh, expression=ex, jaw=jaw, eyelids=eyelids, rotation=R, scale=s)


def test_fit_recovers_known_coefficients(model):
    rng = np.random.default_rng(0)
    y, truth = _synthetic(model, rng)
    noisy = y + rng.normal(0, 0.2, y.shape)
    fit = fit_landmarks(noisy, model, iterations=4)
    assert fit["residual"].max() < 0.6  # px, with 0.2 px noise per coordinate
    np.testing.assert_allclose(fit["scale"], truth["scale"], rtol=0.02)
    assert np.abs(fit["rotation"] - truth["rotation"]).max() < 0.03
    assert np.abs(fit["jaw"][:, 0] - truth["jaw"][:, 0]).max() < 0.05
    assert np.abs(fit["eyelids"] - truth["eyelids"]).mean() < 0.1
    ex = fit["expression"][:, :8]
    assert np.corrcoef(ex.ravel(), truth["expression"][:, :8].ravel())[0, 1] > 0.9
    assert np.corrcoef(fit["shape"][:, :5].ravel(), truth["shape"][:, :5].ravel())[0, 1] > 0.9
    assert fit["landmarks"].shape == (6, 478, 3)
    # 2-D landmarks: scaled-orthographic camera
    fit2 = fit_landmarks(noisy[..., :2], model)
    assert fit2["residual"].max() < 0.8 and np.allclose(fit2["scale"], truth["scale"], rtol=0.05)


def test_fit_shared_shape(model):
    rng = np.random.default_rng(1)
    y, _ = _synthetic(model, rng, b=4)
    fit = fit_landmarks(y, model, shared_shape=True, n_expression=20)
    assert np.allclose(fit["shape"], fit["shape"][:1]) and fit["expression"].shape == (4, 20)


def test_fit_rejects_bad_landmarks(model):
    with pytest.raises(ValueError, match=r"\(B, 478, 2\|3\)"):
        fit_landmarks(np.zeros((2, 468, 3)), model)
    with pytest.raises(ValueError, match="NaN"):
        fit_landmarks(np.full((1, 478, 3), np.nan), model)


def test_save_load_roundtrip_and_bad_files(model, tmp_path):
    p = model.save(tmp_path / "m.npz")
    m2 = load_face_model(p)
    np.testing.assert_array_equal(m2.expression_basis, model.expression_basis)
    assert m2.meta == model.meta and not list(tmp_path.glob(".*tmp*"))
    (tmp_path / "junk.npz").write_text("not a model")
    with pytest.raises(InputError, match="not a mien-face model"):
        load_face_model(tmp_path / "junk.npz")
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(InputError, match="format"):
        load_face_model(tmp_path / "other.npz")
    with pytest.raises(InputError, match="not found"):
        load_face_model(tmp_path / "missing.npz")


def test_au_directions(model):
    d = au_directions()
    assert len(d) == 20 and all(v.shape == (478, 3) and np.isfinite(v).all() for v in d.values())
    # AU26 (jaw drop) lowers the chin (+y in mien-face's frame); AU12 (lip corner puller) widens the mouth
    assert d["AU26"][152, 1] > 0.3
    assert d["AU12"][291, 0] - d["AU12"][61, 0] > 0
    assert set(au_directions(include_pose=True)) >= {"Pitch", "Yaw", "Roll"}


def test_landmark_error():
    from mien.face.landmarks import IBUG68

    rng = np.random.default_rng(0)
    fitted = rng.uniform(0, 100, (3, 478, 3))
    ref = fitted[:, IBUG68, :2].copy()
    e = landmark_error(fitted, ref)
    assert np.allclose(e["px"], 0)
    ref[:, :, 0] += 2.0
    e = landmark_error(fitted, ref, jaw_contour=False)
    np.testing.assert_allclose(e["px"], 2.0)
    np.testing.assert_allclose(e["nme"], 2.0 / e["iod"])
    with pytest.raises(ValueError):
        landmark_error(fitted, ref[:, :60])


# --- FLAME -------------------------------------------------------------------------------------------------


def _fake_flame(tmp_path, monkeypatch, protocol=2):
    """A tiny model in FLAME 2020's pickle format, with chumpy and scipy.sparse objects inside."""
    import scipy.sparse

    chumpy = types.ModuleType("chumpy")
    ch_mod = types.ModuleType("chumpy.ch")

    class Ch:  # what chumpy.ch.Ch pickles as: its __dict__ (minus caches) with the array under "x"
        def __init__(self, x):
            self.x = x
            self._dirty_vars = {"x"}
            self._itr = None
            self._depends_on_deps = {}
            self._make_dense = self._make_sparse = False

    Ch.__module__, Ch.__qualname__ = "chumpy.ch", "Ch"
    ch_mod.Ch = Ch
    monkeypatch.setitem(sys.modules, "chumpy", chumpy)
    monkeypatch.setitem(sys.modules, "chumpy.ch", ch_mod)
    rng = np.random.default_rng(0)
    v = 12
    v_template = rng.normal(0, 0.05, (v, 3))
    v_template[6:, 1] -= 0.08  # lower half: the "jaw" (FLAME frame: y up)
    weights = np.zeros((v, 5))
    weights[:6, 1] = 1.0  # neck/head
    weights[6:, 2] = 1.0  # jaw
    j_reg = np.zeros((5, v))
    j_reg[:, 0] = 1.0
    j_reg[2] = 0.0
    j_reg[2, 6:] = 1.0 / 6
    data = {
        "v_template": v_template,
        "shapedirs": Ch(rng.normal(0, 0.01, (v, 3, 6))),  # 4 shape + 2 expression
        "posedirs": np.zeros((v, 3, 36)),
        "J_regressor": scipy.sparse.csc_matrix(j_reg),
        "weights": weights,
        "kintree_table": np.array([[4294967295, 0, 1, 1, 1], [0, 1, 2, 3, 4]]),
        "f": np.array([[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11]], np.uint32),
        "bs_style": "lbs",
    }
    path = tmp_path / "generic_model.pkl"
    with open(path, "wb") as f:
        pickle.dump(data, f, protocol=protocol)
    return path, data


@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_flame_loader_without_chumpy(tmp_path, monkeypatch, protocol):
    path, data = _fake_flame(tmp_path, monkeypatch, protocol)
    monkeypatch.delitem(sys.modules, "chumpy.ch")  # the loader must not need chumpy
    monkeypatch.delitem(sys.modules, "chumpy")
    emb = tmp_path / "mediapipe_landmark_embedding.npz"
    np.savez(emb, lmk_face_idx=np.array([0, 2]), lmk_b_coords=np.array([[1, 0, 0], [0.2, 0.3, 0.5]]),
             landmark_indices=np.array([1, 152]))
    m = load_flame(path, emb, n_shape=4)
    assert (m.n_shape, m.n_expression, m.units, m.triangles.shape) == (4, 2, "m", (4, 3))
    flip = np.array([1, -1, -1])
    v0 = m.vertices(batch=1)[0]
    np.testing.assert_allclose(v0, data["v_template"] * flip, atol=1e-6)
    v = m.vertices(np.array([[1.0, 0, 0, 0]]), np.array([[0, 2.0]]))[0]
    expect = (data["v_template"] + data["shapedirs"].x[..., 0] + 2 * data["shapedirs"].x[..., 5]) * flip
    np.testing.assert_allclose(v, expect, atol=1e-5)
    # LBS: the jaw rotates its vertices rigidly about the jaw joint, the rest stays
    vj = m.vertices(jaw=np.array([[0.3, 0.0, 0.0]]))[0]
    joint = (data["v_template"][6:].mean(0)) * flip
    np.testing.assert_allclose(vj[:6], v0[:6], atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(vj[6:] - joint, axis=1), np.linalg.norm(v0[6:] - joint, axis=1),
                               atol=1e-5)
    assert np.abs(vj[6:] - v0[6:]).max() > 1e-3
    lmk = m.landmarks(m.vertices(batch=1))
    assert lmk.shape == (1, 2, 3) and list(m.embedding.landmark_ids) == [1, 152]
    np.testing.assert_allclose(lmk[0, 0], v0[0], atol=1e-6)


def test_flame_loader_rejects_bad_files(tmp_path, monkeypatch):
    bad = tmp_path / "evil.pkl"
    with open(bad, "wb") as f:
        pickle.dump({"x": types.SimpleNamespace(a=1)}, f)
    with pytest.raises(InputError, match="not allowed"):
        load_flame(bad)
    txt = tmp_path / "t.pkl"
    txt.write_text("hello")
    with pytest.raises(InputError, match="not a FLAME model"):
        load_flame(txt)
    part = tmp_path / "p.pkl"
    with open(part, "wb") as f:
        pickle.dump({"v_template": np.zeros((3, 3))}, f)
    with pytest.raises(InputError, match="needs keys"):
        load_flame(part)
    with pytest.raises(InputError, match="not found"):
        load_flame(tmp_path / "none.pkl")


# --- build on real frames ------------------------------------------------------------------------------------


def test_build_on_real_frames(analyzed, shared_data, tmp_path):
    results = [analyzed("samples/single_face.mp4"), analyzed("videos/talking/face_5.mp4", end=0.2),
               analyzed("videos/talking/WDA_KatieHill_000.mp4", end=1.0)]
    data = collect(results)
    assert data["landmarks"].shape[1:] == (478, 3) and len(data["subject_names"]) == 3
    m = build_face_model(data, n_shape=10, n_expression=6)
    assert m.n_shape <= 3 and m.n_expression == 6
    for arr in (m.mean, m.shape_basis, m.expression_basis, m.eyelid_basis, m.jaw_weights):
        assert np.isfinite(arr).all()
    assert (np.diff(m.expression_explained) <= 1e-9).all() and (np.diff(m.shape_explained) <= 1e-9).all()
    fit = fit_landmarks(data["landmarks"][:5], m)
    assert np.isfinite(fit["residual"]).all() and fit["residual"].max() < 5.0
    with pytest.raises(ValueError, match="at least 2 subjects"):
        build_face_model(collect(results[:1]))
    with pytest.raises(ValueError, match="analysed first"):  # models sit below the pipelines
        collect([shared_data / "samples/single_face.mp4"])
    # the command entry point: a folder of mien results files → a saved model
    (tmp_path / "in").mkdir()
    for i, r in enumerate(results):
        r.to_parquet(tmp_path / "in" / f"clip{i}.parquet")
    out = tmp_path / "model.npz"
    train_face_model([str(tmp_path / "in")], str(out), 5, 4, exclude=["clip2"], dtype="float16")
    m2 = load_face_model(out)
    assert m2.n_shape == 2 and m2.n_expression == 4 and m2.meta["excluded"] == ["clip2"]
    assert set(m2.meta["sources"]) == {"clip0", "clip1"}


def test_fit_works_on_flame(tmp_path, monkeypatch):
    path, _ = _fake_flame(tmp_path, monkeypatch)
    emb = tmp_path / "emb.npz"
    ids = np.arange(12)
    np.savez(emb, lmk_face_idx=ids // 3, lmk_b_coords=np.eye(3)[ids % 3], landmark_indices=ids)
    m = load_flame(path, emb, n_shape=4)
    truth = np.array([[0.5, -0.3, 0.2, 0.0]]), np.array([[0.4, 0.0]]), np.array([[0.15, 0.0, 0.0]])
    x = m.landmarks(m.vertices(*truth)).astype(np.float64)  # (1, 12, 3) metres
    y = np.zeros((1, 478, 3))
    y[0, :12] = 2000.0 * x[0] @ _rotation(0.1, -0.2, 0.05).T + 300.0  # 2000 px per metre
    fit = fit_landmarks(y, m, prior_scale=10.0, iterations=6)
    assert fit["residual"][0] < 0.05 and abs(fit["scale"][0] / 2000.0 - 1) < 0.01
    assert np.isnan(fit["landmarks"][0, 12:]).all()


def test_flame_jacobian_matches_vertices(tmp_path, monkeypatch):
    path, _ = _fake_flame(tmp_path, monkeypatch)
    emb = tmp_path / "emb.npz"
    np.savez(emb, lmk_face_idx=np.array([0, 2, 3]), lmk_b_coords=np.array([[1, 0, 0], [0.2, 0.3, 0.5], [0, 0, 1]]),
             landmark_indices=np.array([1, 152, 10]))
    m = load_flame(path, emb, n_shape=4)
    theta = np.array([[0.3, -0.2, 0.0, 0.1, 0.5, -0.4, 0.2, 0.01, 0.0, 0.0, 0.0]])
    x, J = m.jacobian(theta, 4, 2)
    ref = m.landmarks(m.vertices(theta[:, :4], theta[:, 4:6], theta[:, 6:9], theta[:, 9:]))
    np.testing.assert_allclose(x, ref, atol=1e-5)
    d = 1e-3
    bumped = theta.copy()
    bumped[0, 6] += d  # jaw opening
    ref2 = m.landmarks(m.vertices(bumped[:, :4], bumped[:, 4:6], bumped[:, 6:9], bumped[:, 9:]))
    np.testing.assert_allclose(J[0, 6], (ref2 - ref)[0] / d, atol=2e-3)
