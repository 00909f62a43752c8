"""mien.heads: contracts, columns, empty results, batching, backends, AU model files, gaze validity, smoothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")



def _image(shared_data):
    import PIL.Image

    return np.asarray(PIL.Image.open(shared_data / "samples/single_face.jpg").convert("RGB"))


@pytest.fixture(scope="module")
def face(shared_data):
    """(image, bbox, landmarks) of the face in samples/single_face.jpg."""
    from mien.pipelines.analyze import analyze

    r = analyze(shared_data / "samples/single_face.jpg", identity=False)
    return _image(shared_data), r.bbox[0], r.landmarks[0]


def _onnx_au_model(path: Path, names=("AU01", "AU12"), size: int = 48, intensity: bool = False) -> dict:
    """A random-init image AU net exported to ONNX with the "mien_au" contract metadata (no mien.tasks)."""
    onnx = pytest.importorskip("onnx")

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.conv = torch.nn.Conv2d(3, 4, 3, stride=2)
            self.fc = torch.nn.Linear(4, len(names))
            self.fi = torch.nn.Linear(4, len(names))

        def forward(self, x):
            h = self.conv(x).mean((2, 3))
            p = torch.sigmoid(self.fc(h))
            return (p, torch.sigmoid(self.fi(h))) if intensity else p

    import warnings

    outputs = ["probs", "intensity"] if intensity else ["probs"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Net().eval(), (torch.rand(2, 3, size, size),), str(path), input_names=["image"],
                          output_names=outputs, dynamic_axes={"image": {0: "b"}, **{o: {0: "b"} for o in outputs}},
                          opset_version=17, dynamo=False)
    contract = {"au_names": list(names), "image_size": size, "value_range": "0-1", "color": "RGB", "grayscale": True,
                "crop": {"kind": "landmark-box-square", "scale": 1.2, "landmark_scheme": "mediapipe478"},
                "intensity": "regression" if intensity else "none", "threshold": 0.5, "backbone": "tiny"}
    m = onnx.load(str(path))
    e = m.metadata_props.add()
    e.key, e.value = "mien_au", json.dumps(contract)
    onnx.save(m, str(path))
    return contract


# ---- contracts ---------------------------------------------------------------------------------------------
def test_contracts_are_registered_and_cut_the_documented_crop(face):
    from mien.face.crops import crop_square, face_crop, square_box
    from mien.heads.faceapi import ExpressionHead, IdentityHead
    from mien.models.registry import FACE_BOX_CROP, InputContract, get_model_spec

    img, box, lm = face
    e, i = ExpressionHead(), IdentityHead()
    assert e.contract == get_model_spec("faceapi-expression").contract and e.contract.crop == FACE_BOX_CROP
    assert i.contract.crop_size == 150 and i.contract.crop == FACE_BOX_CROP
    ref = crop_square(img, square_box(box, 1.1), 112)
    assert np.array_equal(e.contract.cut(img, box, lm), ref)
    assert np.array_equal(face_crop(img, e.contract, None, box, lm), ref)
    c = InputContract.from_dict({"image_size": 48, "grayscale": True, "crop": {"kind": "landmark-box-square",
                                                                              "scale": 1.2}})
    assert (c.crop, c.crop_size, c.grayscale) == ("landmark-box-square-1.2", 48, True)
    assert InputContract.from_dict(c.to_dict()) == c


# ---- columns and empty results -----------------------------------------------------------------------------
def test_columns_and_empty_result_derive_from_column_specs(shared_data, tmp_path):
    from mien.heads import build_heads, empty_columns
    from mien.pipelines.analyze import AnalyzeOptions, analyze

    onnx_path = tmp_path / "au.onnx"
    _onnx_au_model(onnx_path, intensity=True)
    for opts, expect in [
        (dict(emotion=True), {"emotion_happy": (), "expression_embedding": (256,)}),
        (dict(au=True), {"AU12": ()}),
        (dict(au_model=str(onnx_path)), {"AU01": (), "AU12_intensity": ()}),
    ]:
        heads = build_heads(AnalyzeOptions(**opts))
        specs = [c for h in heads for c in h.columns()]
        assert all(c.unit is not None and c.description for c in specs)
        res = analyze(shared_data / "samples/no_face.mp4", identity=False, end=0.5, **opts)
        assert len(res) == 0
        assert set(res.extra) == {c.name for c in specs} == set(res.meta["extra_columns"])
        for name, shape in expect.items():
            assert res.extra[name].shape == (0, *shape)
        for name, arr in empty_columns(specs).items():
            assert res.extra[name].dtype == arr.dtype
    assert "expression_embedding" not in analyze(shared_data / "samples/single_face.jpg", au=True).extra


def test_tokenizer_head(tiny_tokenizer_dir, face):
    from mien.heads.tokens import TOKEN_COLUMN, TokenHead

    img, box, lm = face
    h = TokenHead(tiny_tokenizer_dir)
    (spec,) = h.columns()
    assert spec.name == TOKEN_COLUMN and spec.shape == (h.extractor.dim,)
    crop = h.contract.cut(img, box, lm)
    out = h(np.stack([crop, crop]), np.stack([lm, lm]))[TOKEN_COLUMN]
    assert out.shape == (2, h.extractor.dim)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1, atol=1e-5)
    assert set(h.model_info()["files"]) == {"config.json", "model.safetensors"}


# ---- batching and backends ---------------------------------------------------------------------------------
def test_batched_equals_per_face(shared_data):
    from mien.heads.faceapi import ExpressionHead
    from mien.io.video import VideoSource
    from mien.pipelines.analyze import analyze

    r = analyze(shared_data / "samples/single_face.mp4", identity=False, end=0.5)
    head = ExpressionHead()
    crops = np.stack([head.contract.cut(fr.image, r.bbox[i], r.landmarks[i])
                      for i, fr in enumerate(VideoSource(shared_data / "samples/single_face.mp4", end=0.5))])
    batched = head(crops, r.landmarks)
    for i in range(0, len(crops), 5):
        single = head(crops[i:i + 1], r.landmarks[i:i + 1])
        for k, v in single.items():
            np.testing.assert_allclose(batched[k][i], v[0], atol=1e-5, err_msg=k)


def test_onnxruntime_matches_torch(face, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    from mien.heads.faceapi import ExpressionHead, IdentityHead

    monkeypatch.setenv("MIEN_CACHE_DIR", str(tmp_path))
    img, box, lm = face
    for cls in (ExpressionHead, IdentityHead):
        a, b = cls(backend="torch"), cls(backend="onnxruntime")
        assert (a.backend, b.backend) == ("torch", "onnxruntime")
        crops = np.stack([a.contract.cut(img, box * s, lm) for s in (1.0, 0.98, 1.03)])
        if cls is IdentityHead:
            np.testing.assert_allclose(a.descriptors(crops), b.descriptors(crops), atol=1e-4)
        else:
            x, y = a(crops, None), b(crops, None)
            for k in x:
                np.testing.assert_allclose(x[k], y[k], atol=1e-4, err_msg=k)
    assert len(list((tmp_path / "onnx").glob("faceapi-*.onnx"))) == 2  # cached, keyed by the weights' hash
    assert not list((tmp_path / "onnx").glob(".*tmp*"))


# ---- AU models ---------------------------------------------------------------------------------------------
def test_ckpt_refused_with_one_line(tmp_path):
    from mien.heads.au import load_au_model
    from mien.pipelines.analyze import analyze

    ckpt = tmp_path / "m.ckpt"
    ckpt.write_bytes(b"x")
    for call in (lambda: load_au_model(ckpt), lambda: analyze(tmp_path / "any.jpg", au_model=str(ckpt))):
        with pytest.raises(ValueError) as e:
            call()
        assert "\n" not in str(e.value) and f"mien export au --checkpoint {ckpt}" in str(e.value)


def test_load_au_model_api_and_custom_head(face, tmp_path):
    from mien.heads.au import CustomAUHead, load_au_model

    img, box, lm = face
    onnx_path = tmp_path / "au.onnx"
    contract = _onnx_au_model(onnx_path, intensity=True)
    runner = load_au_model(onnx_path)
    assert runner.names == ["AU01", "AU12"] and runner.contract == contract
    crops = runner.crop_faces([img, img], np.stack([lm, lm]))
    assert crops.shape == (2, 48, 48, 3) and crops.dtype == np.uint8
    pred = runner.predict(crops)
    assert pred["probs"].shape == (2, 2) and pred["probs"].dtype == np.float32 and pred["intensity"].shape == (2, 2)
    names, probs = runner(crops)
    assert names == runner.names and np.array_equal(probs, pred["probs"])
    head = CustomAUHead(onnx_path)
    out = head(np.stack([head.contract.cut(img, box, lm)]), lm[None])
    np.testing.assert_allclose(out["AU12"], pred["probs"][:1, 1], atol=1e-6)
    np.testing.assert_allclose(out["AU12_intensity"], 5 * pred["intensity"][:1, 1], atol=1e-5)


def test_au_model_safetensors_folder_equals_default(shared_data, tmp_path):
    from mien.models.au import load_default_au_model, save_au_head
    from mien.pipelines.analyze import analyze

    save_au_head(load_default_au_model(), tmp_path / "head")
    img = shared_data / "samples/single_face.jpg"
    a, b = analyze(img, au=True), analyze(img, au_model=str(tmp_path / "head"))
    for name in a.meta["au"]["names"]:
        np.testing.assert_allclose(a.extra[name], b.extra[name], atol=1e-6)
    assert "expression_embedding" not in b.extra


def test_cli_analyze_onnx_au_model_without_lightning(shared_data, tmp_path, mien_without_lightning):
    """`mien analyze IMG --au-model X.onnx` works where importing lightning fails, and never imports mien.tasks."""
    onnx_path = tmp_path / "au.onnx"
    _onnx_au_model(onnx_path)
    mien_without_lightning(["analyze", shared_data / "samples/single_face.jpg", "-o", tmp_path / "out",
                            "--au-model", onnx_path, "--no-overlay", "--no-plot"])
    from mien.results import read_results

    res = read_results(tmp_path / "out" / "video=single_face" / "part-0.parquet")
    assert len(res) == 1 and {"AU01", "AU12"} <= set(res.extra)
    assert res.meta["au"]["model"] == "au.onnx"


# ---- gaze validity -----------------------------------------------------------------------------------------
def test_gaze_is_nan_on_closed_eyes(analyzed):
    """driving_d0 blinks around frames 65-67: eyes shut, so gaze is not measured there."""
    from mien.pipelines.frame_analyzer import GAZE_COLUMNS, GAZE_MIN_EAR

    r = analyzed("videos/expressive/driving_d0.mp4")
    closed = (r.ear_left + r.ear_right) / 2 < GAZE_MIN_EAR
    assert closed.any() and (~closed).sum() > 50
    assert np.array_equal(r.gaze_valid, ~closed)
    assert r.blink[closed].all()  # the shut frames are part of a detected blink
    for c in GAZE_COLUMNS:
        v = getattr(r, c)
        assert np.isnan(v[closed]).all() and np.isfinite(v[~closed]).all(), c


# ---- smoothing ---------------------------------------------------------------------------------------------
def test_one_euro_filter_basics():
    from mien.face.smoothing import OneEuroParams, one_euro

    t = np.arange(50) / 25.0
    const = np.full((50, 3), 7.0, np.float32)
    assert np.array_equal(one_euro(const, t), const)
    rng = np.random.default_rng(0)
    noisy = 5 + rng.normal(0, 1, (50, 4))
    out = one_euro(noisy, t, OneEuroParams(1.0, 0.0))
    assert np.array_equal(out[0], noisy[0]) and np.diff(out[10:], axis=0).std() < np.diff(noisy[10:], axis=0).std() / 2
    noisy[5] = np.nan
    out = one_euro(noisy, t)
    assert np.isnan(out[5]).all() and np.isfinite(np.delete(out, 5, 0)).all()
    with pytest.raises(ValueError):
        one_euro(noisy, t[::-1])


def test_smoothing_reduces_jitter_and_is_off_by_default(shared_data, analyzed):
    from mien.face.smoothing import landmark_jitter
    from mien.pipelines.analyze import analyze

    raw = analyzed("samples/single_face.mp4")
    smo = analyze(shared_data / "samples/single_face.mp4", smooth=True)
    assert "smoothing" not in raw.meta and smo.meta["smoothing"]["params"]["landmarks"]["min_cutoff"] > 0
    still = (raw.t_sec > 1.2) & (raw.t_sec < 2.2)  # the subject holds still here
    assert landmark_jitter(smo.landmarks[still]) < 0.8 * landmark_jitter(raw.landmarks[still])
    assert np.abs(smo.landmarks - raw.landmarks).mean() < 2.0  # little lag
    for c in ("ear_left", "mouth_open", "blink", "bbox", "frame"):  # computed from the unsmoothed landmarks
        assert np.array_equal(getattr(smo, c), getattr(raw, c)), c
    assert not np.array_equal(smo.yaw_deg, raw.yaw_deg)
