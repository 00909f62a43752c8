"""The face3d head (`mien analyze --face3d`), smoothing and jitter, `mien train face-model`, `mien render face3d`
and mesh export, on real faces from ../shared/data."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from mien.errors import InputError  # noqa: E402
from mien.heads.face3d import Face3DHead  # noqa: E402
from mien.models.face3d import fit_landmarks, load_face_model  # noqa: E402
from mien.models.face3d.export import read_obj  # noqa: E402
from mien.models.face3d.spec import open_face_model  # noqa: E402
from mien.pipelines.analyze import AnalyzeOptions  # noqa: E402
from mien.pipelines.face3d import fit_result, jitter_report  # noqa: E402

CLIP = "samples/single_face.mp4"


@pytest.fixture(scope="module")
def model():
    return load_face_model()


def test_analyze_face3d_columns(analyzed, model, torch_one_thread):
    res = analyzed(CLIP, identity=False, face3d=True)
    S, E = model.n_shape, model.n_expression
    n = len(res)
    assert n == 72
    shapes = {"face3d_shape": (S,), "face3d_expression": (E,), "face3d_jaw": (3,), "face3d_eyelids": (2,),
              "face3d_rotation": (3, 3), "face3d_scale": (), "face3d_translation": (3,), "face3d_residual": ()}
    for name, shape in shapes.items():
        a = res.extra[name]
        assert a.shape == (n, *shape) and a.dtype == np.float32 and np.isfinite(a).all(), name
        assert name in res.meta["extra_columns"]
    assert res.meta["extra_columns"]["face3d_residual"]["unit"] == "px"
    assert res.meta["extra_columns"]["face3d_jaw"]["unit"] == "rad"
    assert np.median(res.extra["face3d_residual"]) < 1.0  # px on a 640x360 clip
    fid = res.face_id
    for f in np.unique(fid):  # one identity per track
        sh = res.extra["face3d_shape"][fid == f]
        assert np.all(sh == sh[0])
    R = res.extra["face3d_rotation"].astype(np.float64)
    np.testing.assert_allclose(R @ np.swapaxes(R, 1, 2), np.broadcast_to(np.eye(3), R.shape), atol=1e-4)
    info = res.meta["models"]["face3d"]
    assert info["name"] == "mien-face" and len(info["sha256"]) == 64
    assert res.meta["face3d"]["n_expression"] == E
    # the columns reconstruct the mesh on the face: projected vertices ≈ MediaPipe's points
    e = res.extra
    v = model.vertices(e["face3d_shape"], e["face3d_expression"], e["face3d_jaw"], e["face3d_eyelids"])
    px = e["face3d_scale"][:, None, None] * np.einsum("nij,nvj->nvi", R, v) + e["face3d_translation"][:, None]
    err = np.linalg.norm(px[:, :468, :2] - res.landmarks[:, :468, :2], axis=-1)
    assert np.sqrt((err ** 2).mean()) < 1.0


def test_empty_result_has_face3d_columns(analyzed, model):
    res = analyzed("samples/no_face.mp4", identity=False, face3d=True)
    assert len(res) == 0
    assert res.extra["face3d_expression"].shape == (0, model.n_expression)
    assert res.extra["face3d_rotation"].shape == (0, 3, 3)
    assert "face3d_scale" in res.meta["extra_columns"] and "face3d" in res.meta


def test_fixed_shape_fit(model):
    rng = np.random.default_rng(3)
    b = 4
    sh = np.zeros(model.n_shape)
    sh[:4] = rng.normal(size=4) * model.shape_std[:4]
    ex = np.zeros((b, model.n_expression))
    ex[:, :6] = rng.normal(size=(b, 6)) * model.expression_std[:6]
    x = model.vertices(np.tile(sh, (b, 1)), ex).astype(np.float64)
    y = 20.0 * x + 300.0
    fit = fit_landmarks(y, model, shape=sh)
    assert np.array_equal(fit["shape"], np.broadcast_to(sh, (b, len(sh))))
    assert fit["residual"].max() < 0.05
    assert np.corrcoef(fit["expression"][:, :6].ravel(), ex[:, :6].ravel())[0, 1] > 0.95


def test_smoothing_lowers_jitter(analyzed, torch_one_thread):
    res = analyzed(CLIP, identity=False)
    cols = res.columns()
    lm = cols["landmarks"][np.lexsort((cols["face_id"], cols["frame"]))]
    raw = jitter_report(fit_result(res, smooth=False), lm)
    smooth_head = Face3DHead(smooth=True)
    smoothed = jitter_report(fit_result(res, head=smooth_head), lm)
    assert raw["still_pairs"] > 10 and raw["still_pairs"] == smoothed["still_pairs"]
    assert smoothed["posed_px"] < 0.8 * raw["posed_px"]
    assert smoothed["shape_mm"] < 0.8 * raw["shape_mm"]
    assert "smoothing" in smooth_head.meta()["face3d"]


def test_model_spec_errors(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_text("not a model")
    with pytest.raises(InputError, match="bad.npz"):
        open_face_model(bad)
    with pytest.raises(InputError, match="bad.npz"):
        AnalyzeOptions(face3d=True, face3d_model=str(bad))
    with pytest.raises(ValueError, match="needs face3d"):
        AnalyzeOptions(face3d_model=str(bad))
    pkl = tmp_path / "generic_model.pkl"
    pkl.write_bytes(b"x")
    with pytest.raises(InputError, match="landmark embedding"):
        open_face_model(f"flame:{pkl}")


def test_cli_train_face_model_without_lightning(shared_data, tmp_path, mien_without_lightning):
    """`mien train face-model` on 2 short clips writes a loadable model, where importing lightning fails."""
    out = tmp_path / "m.npz"
    clips = [str(shared_data / CLIP), str(shared_data / "videos/talking/face_5.mp4")]
    mien_without_lightning(["train", "face-model", *clips, "-o", out, "--every", "5", "--n-shape", "1",
                            "--n-expression", "4", "--dtype", "float16"], timeout=600)
    m = load_face_model(out)
    assert (m.n_shape, m.n_expression, m.n_vertices) == (1, 4, 478)


def test_cli_train_face_model_bad_input(tmp_path, capsys):
    from mien.cli.main import main

    rc = main(["train", "face-model", str(tmp_path / "missing.mp4"), "-o", str(tmp_path / "m.npz")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "missing.mp4" in err and len(err.splitlines()) == 1


def test_cli_render_face3d_and_export(shared_data, tmp_path, capsys, torch_one_thread):
    import av

    from mien.cli.main import main

    out = tmp_path / "out.mp4"
    mesh = tmp_path / "mesh"
    import importlib.util

    gltf = importlib.util.find_spec("pygltflib") is not None
    rc = main(["render", "face3d", str(shared_data / CLIP), "-o", str(out), "--export-mesh", str(mesh), "--obj",
               "--smooth", *(["--gltf"] if gltf else [])])
    assert rc == 0, capsys.readouterr().err
    with av.open(str(out)) as c:
        s = c.streams.video[0]
        frames = sum(1 for _ in c.decode(video=0))
        assert frames == 72 and float(s.average_rate) == pytest.approx(30.0, rel=1e-3)
        assert (s.width, s.height) == (3 * 640, 360)
    z = np.load(mesh / "mesh.npz")
    assert z["vertices"].shape == (72, 478, 3) and z["triangles"].shape == (898, 3)
    assert z["rotation"].shape == (72, 3, 3) and z["frame"].shape == (72,) and str(z["units"]) == "cm"
    objs = sorted((mesh / "obj").glob("*.obj"))
    assert len(objs) == 72
    v, f = read_obj(objs[10])
    assert v.shape == (478, 3) and f.shape == (898, 3)
    np.testing.assert_allclose(v, z["vertices"][10], atol=1e-5)
    assert (mesh / "face_0.glb").is_file() == gltf


def test_cli_render_face3d_bad_model(shared_data, tmp_path, capsys):
    from mien.cli.main import main

    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"\x00" * 10)
    rc = main(["render", "face3d", str(shared_data / CLIP), "-o", str(tmp_path / "o.mp4"), "--model", str(bad)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "bad.npz" in err and len(err.splitlines()) == 1
    rc = main(["analyze", str(shared_data / CLIP), "-o", str(tmp_path / "a"), "--face3d", "--face3d-model", str(bad)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "bad.npz" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o.mp4").exists()


def test_draw_mesh_shades_and_culls(model):
    from mien.viz.mesh import render_mesh

    v = model.vertices()[0].astype(np.float64) * 10 + np.array([100.0, 100.0, 0.0])
    img = render_mesh((200, 200), v, model.triangles)
    lit = img.sum(-1) > 0
    assert 0.3 < lit.mean() < 0.9 and img[100, 100].max() > 100  # face drawn, nose lit
    inside_out = v * np.array([-1.0, 1.0, 1.0]) + np.array([200.0, 0.0, 0.0])  # mirrored: triangles face away
    assert (render_mesh((200, 200), inside_out, model.triangles).sum(-1) > 0).mean() < 0.05 * lit.mean()


def test_gltf_morph_export_roundtrip(model, tmp_path):
    g = pytest.importorskip("pygltflib")
    from mien.models.face3d.export import write_gltf_morph

    rng = np.random.default_rng(0)
    T = 12
    ex = np.zeros((T, model.n_expression))
    ex[:, :5] = rng.normal(size=(T, 5)) * model.expression_std[:5]
    jaw = np.zeros((T, 3))
    jaw[:, 0] = np.linspace(0, 0.2, T)
    v = model.vertices(expression=ex, jaw=jaw)
    info = write_gltf_morph(tmp_path / "f.glb", v, model.triangles, np.arange(T) / 30.0, n_targets=8)
    assert info["targets"] == 8 and info["explained"] > 0.999 and info["max_error"] < 0.01  # cm
    m = g.GLTF2().load(str(tmp_path / "f.glb"))
    blob = m.binary_blob()

    def read(i, comp, shape):
        a, bv = m.accessors[i], m.bufferViews[m.accessors[i].bufferView]
        return np.frombuffer(blob, comp, a.count * int(np.prod(shape)), bv.byteOffset).reshape(a.count, *shape)

    prim = m.meshes[0].primitives[0]
    base = read(prim.attributes.POSITION, np.float32, (3,))
    targets = np.stack([read(t["POSITION"], np.float32, (3,)) for t in prim.targets])
    ch = m.animations[0].samplers[0]
    w = read(ch.output, np.float32, ()).reshape(T, -1)
    rebuilt = (base + np.einsum("tk,kvc->tvc", w, targets)) * np.array([1, -1, -1]) * 100  # back to cm, mien axes
    assert base.shape == (478, 3) and np.abs(rebuilt - v).max() < 0.01


def test_head_on_a_flame_file(tmp_path, monkeypatch):
    """``flame:MODEL.pkl,EMBEDDING.npz`` runs through the head (synthetic file in FLAME's format)."""
    import functools

    import mien.models.face3d.flame as flame
    from test_face3d import _fake_flame, _rotation

    path, _ = _fake_flame(tmp_path, monkeypatch)
    monkeypatch.setattr(flame, "load_flame", functools.partial(flame.load_flame, n_shape=4))  # tiny file: 4 + 2
    emb = tmp_path / "emb.npz"
    ids = np.arange(12)
    np.savez(emb, lmk_face_idx=ids // 3, lmk_b_coords=np.eye(3)[ids % 3], landmark_indices=ids)
    head = Face3DHead(f"flame:{path},{emb}")
    m = head.model
    x = m.landmarks(m.vertices(np.array([[0.5, -0.3, 0.2, 0.0]]), np.array([[0.4, 0.0]]))).astype(np.float64)
    lm = np.zeros((3, 478, 3))
    for i in range(3):
        lm[i, :12] = 2000.0 * x[0] @ _rotation(0.1 * i, -0.2, 0.05).T + 300.0 + i
    cols = {"landmarks": lm, "t_sec": np.arange(3) / 25.0}
    out = head.finish(cols, np.zeros(3, np.int32))
    assert out["face3d_shape"].shape == (3, 4) and out["face3d_expression"].shape == (3, 2)
    assert np.isfinite(out["face3d_residual"]).all() and head.columns()[0].unit == "m"
    assert set(head.model_info()["files"]) == {"generic_model.pkl", "emb.npz"}
