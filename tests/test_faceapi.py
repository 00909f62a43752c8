"""Tests of mien's PyTorch port of face-api's FaceExpressionNet and FaceRecognitionNet.

The reference numbers in ``tests/data/faceapi_reference.json`` come from the original TF.js nets
(``@vladmandic/face-api`` 1.7.15, tfjs 4.22.0 CPU backend) via ``scripts/faceapi_reference.mjs``; see
``mien.models.faceapi.reference`` for how the inputs are built and how to regenerate. Tests that need the
shared data folder (``$MIEN_SHARED_DATA`` or ``<repo>/../shared/data``, read in place, never copied) skip
when it is absent and fail when ``MIEN_REQUIRE_SHARED_DATA=1``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the face-api port needs torch")
pytest.importorskip("safetensors", reason="the face-api weights are safetensors files")

from mien.errors import InputError  # noqa: E402
from mien.models.faceapi import (  # noqa: E402
    EXPRESSION_LABELS,
    FaceExpressionNet,
    FaceRecognitionNet,
    asset_path,
    load_expression_net,
    load_recognition_net,
    to_batch_tensor,
)
from mien.models.faceapi.convert import (  # noqa: E402
    convert_faceapi,
    dequantize,
    read_tfjs_weights,
    to_torch_state_dict,
)
from mien.models.faceapi.nets import pad_to_square, resize_bilinear_tf  # noqa: E402
from mien.models.faceapi.reference import (  # noqa: E402
    ReferenceInput,
    array_sha256,
    build_input,
)

REPO = Path(__file__).resolve().parents[1]
REFERENCE = json.loads((REPO / "tests" / "data" / "faceapi_reference.json").read_text())
SYNTHETIC = [e for e in REFERENCE["inputs"] if e["source"] == "synthetic"]
IMAGES = [e for e in REFERENCE["inputs"] if e["source"] != "synthetic"]

# Measured differences to TF.js: probabilities <= 6e-7, embedding <= 3e-6 (float32 weights); descriptor
# <= 4e-4 (the recognition weights ship as float16).
PROB_ATOL = 1e-4
LOGIT_ATOL = 1e-3
EMBED_ATOL = 1e-4
DESCRIPTOR_ATOL = 1e-3

SOURCE_SHARDS = {
    "face_expression_model.bin": "9a9840f2cf1f4c7eab95f197512569345c00d2426754d4608b92af30e0300f3d",
    "face_recognition_model.bin": "b413e420d6840b2775fba32008db6f3cddb07d485967fb42cfcf379c16a8c589",
}


@pytest.fixture(scope="session")
def _faceapi_data() -> Path:
    """Shared data folder (``$MIEN_SHARED_DATA`` or ``<repo>/../shared/data``), like conftest's ``shared_data``.

    Skips when the folder is absent, fails instead when ``MIEN_REQUIRE_SHARED_DATA=1``.
    """
    path = Path(os.environ.get("MIEN_SHARED_DATA", REPO.parent / "shared" / "data"))
    if not path.is_dir():
        if os.environ.get("MIEN_REQUIRE_SHARED_DATA") == "1":
            pytest.fail(f"shared data folder {path} is missing and MIEN_REQUIRE_SHARED_DATA=1")
        pytest.skip(f"shared data folder {path} not present")
    return path


@pytest.fixture(scope="module")
def expression_net() -> FaceExpressionNet:
    return load_expression_net()


@pytest.fixture(scope="module")
def recognition_net() -> FaceRecognitionNet:
    return load_recognition_net()


def _check_against_reference(entry: dict, image: np.ndarray, expression_net, recognition_net) -> None:
    assert list(image.shape) == entry["shape"]
    if entry["source"] != "synthetic":  # the synthetic pattern may differ in its last bit with another libm
        assert array_sha256(image) == entry["input_sha256"], f"{entry['name']}: not the reference's input"
    with torch.no_grad():
        x = to_batch_tensor(image, 112)
        exp = entry["expression"]
        assert x.double().sum().item() == pytest.approx(exp["batch_tensor_sum"], rel=1e-6)
        logits = expression_net(x)[0].numpy()
        probs = expression_net.predict_proba(x)[0].numpy()
        emb = expression_net.embed(x)[0].numpy()
        np.testing.assert_allclose(probs, exp["probs"], atol=PROB_ATOL, rtol=0)
        np.testing.assert_allclose(logits, exp["logits"], atol=LOGIT_ATOL, rtol=0)
        np.testing.assert_allclose(emb[:16], exp["embedding"]["head"], atol=EMBED_ATOL, rtol=0)
        assert np.linalg.norm(emb) == pytest.approx(exp["embedding"]["norm"], abs=EMBED_ATOL * 10)
        assert emb.astype(np.float64).sum() == pytest.approx(exp["embedding"]["sum"], abs=EMBED_ATOL * 100)

        x = to_batch_tensor(image, 150)
        rec = entry["recognition"]
        assert x.double().sum().item() == pytest.approx(rec["batch_tensor_sum"], rel=1e-6)
        desc = recognition_net(x)[0].numpy()
        np.testing.assert_allclose(desc[:16], rec["descriptor"]["head"], atol=DESCRIPTOR_ATOL, rtol=0)
        assert np.linalg.norm(desc) == pytest.approx(rec["descriptor"]["norm"], abs=DESCRIPTOR_ATOL)


# ------------------------------------------------------------------------------------------------------
# Agreement with the original TF.js graph
# ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("entry", SYNTHETIC, ids=[e["name"] for e in SYNTHETIC])
def test_matches_tfjs_on_synthetic_inputs(entry, expression_net, recognition_net):
    image = build_input(ReferenceInput(entry["name"], entry["source"], params=entry["params"]), None)
    _check_against_reference(entry, image, expression_net, recognition_net)


@pytest.mark.parametrize("entry", IMAGES, ids=[e["name"] for e in IMAGES])
def test_matches_tfjs_on_real_faces(entry, expression_net, recognition_net, _faceapi_data):
    image = build_input(ReferenceInput(entry["name"], entry["source"], params=entry["params"]), _faceapi_data)
    if array_sha256(image) != entry["input_sha256"] and entry["params"]["path"].endswith(".jpg"):
        pytest.skip("this Pillow's JPEG decoder gives other pixels than the one the reference was made with")
    _check_against_reference(entry, image, expression_net, recognition_net)


def test_reference_file_is_complete():
    assert REFERENCE["faceapi_version"] == "1.7.15"
    assert REFERENCE["labels"] == list(EXPRESSION_LABELS)
    assert len(SYNTHETIC) >= 3 and len(IMAGES) >= 12
    for e in REFERENCE["inputs"]:
        assert sum(e["expression"]["probs"]) == pytest.approx(1.0, abs=1e-5)
        assert len(e["expression"]["embedding"]["head"]) == 16 and e["expression"]["embedding"]["dim"] == 256
        assert e["recognition"]["descriptor"]["dim"] == 128


# ------------------------------------------------------------------------------------------------------
# Shapes, dtypes, errors
# ------------------------------------------------------------------------------------------------------


def test_expression_net_shapes_and_dtypes(expression_net):
    x = torch.rand(3, 3, 112, 112, generator=torch.Generator().manual_seed(0)) * 255
    with torch.no_grad():
        logits = expression_net(x)
        probs = expression_net.predict_proba(x)
        emb = expression_net.embed(x)
    assert logits.shape == (3, 7) and logits.dtype == torch.float32
    assert probs.shape == (3, 7) and torch.allclose(probs.sum(1), torch.ones(3))
    assert emb.shape == (3, 256) and emb.dtype == torch.float32 and bool((emb >= 0).all())
    assert torch.allclose(expression_net.fc(emb), logits)
    assert expression_net.labels == ("neutral", "happy", "sad", "angry", "fearful", "disgusted", "surprised")
    assert not expression_net.training


def test_recognition_net_shapes_and_dtypes(recognition_net):
    x = torch.rand(2, 3, 150, 150, generator=torch.Generator().manual_seed(0)) * 255
    with torch.no_grad():
        d = recognition_net(x)
    assert d.shape == (2, 128) and d.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in recognition_net.parameters())


@pytest.mark.parametrize(
    "bad",
    [
        torch.zeros(1, 3, 100, 100),
        torch.zeros(3, 112, 112),
        torch.zeros(1, 112, 112, 3),
        torch.zeros(1, 3, 112, 112, dtype=torch.uint8),
    ],
)
def test_expression_net_rejects_bad_input(expression_net, bad):
    with pytest.raises(ValueError):
        expression_net(bad)


def test_recognition_net_rejects_bad_input(recognition_net):
    with pytest.raises(ValueError):
        recognition_net(torch.zeros(1, 3, 112, 112))


# ------------------------------------------------------------------------------------------------------
# Preprocessing (NetInput.toBatchTensor)
# ------------------------------------------------------------------------------------------------------


def test_pad_to_square_centres_like_faceapi():
    img = torch.ones(2, 5, 3)  # H=2, W=5: 3 rows of zeros, round(1.5)=2 after, 1 before
    out = pad_to_square(img)
    assert out.shape == (5, 5, 3)
    assert out[:, :, 0].sum(1).tolist() == [0, 5, 5, 0, 0]
    img = torch.ones(4, 3, 3)  # H=4, W=3: round(0.5)=1 column after (JS rounding), none before
    assert pad_to_square(img)[:, :, 0].sum(0).tolist() == [4, 4, 4, 0]


def test_resize_bilinear_is_tf_legacy_sampling():
    img = torch.tensor([[0.0, 10.0], [20.0, 30.0]])[:, :, None]
    out = resize_bilinear_tf(img, 4)[:, :, 0]  # source coords 0, 0.5, 1, 1.5 -> clamp to 1
    expected = torch.tensor(
        [[0.0, 5.0, 10.0, 10.0], [10.0, 15.0, 20.0, 20.0], [20.0, 25.0, 30.0, 30.0], [20.0, 25.0, 30.0, 30.0]]
    )
    assert torch.equal(out, expected)
    assert torch.equal(resize_bilinear_tf(img, 2), img)


def test_to_batch_tensor_inputs():
    gray = np.arange(48 * 48, dtype=np.uint8).reshape(48, 48)
    a = to_batch_tensor(gray, 112)
    b = to_batch_tensor(np.repeat(gray[:, :, None], 3, axis=2), 112)
    assert a.shape == (1, 3, 112, 112) and a.dtype == torch.float32 and torch.equal(a, b)
    batch = to_batch_tensor([np.zeros((30, 40, 3)), np.full((112, 112, 3), 255.0)], 112)
    assert batch.shape == (2, 3, 112, 112) and float(batch[1].min()) == 255.0
    assert to_batch_tensor(np.zeros((4, 20, 20, 3), np.float32), 150).shape == (4, 3, 150, 150)
    with pytest.raises(ValueError):
        to_batch_tensor(np.zeros((10, 10, 2)), 112)
    with pytest.raises(ValueError):
        to_batch_tensor([], 112)


# ------------------------------------------------------------------------------------------------------
# Converter: dequantisation, layouts, a small hand-made package
# ------------------------------------------------------------------------------------------------------


def _write_manifest(folder: Path, name: str, weights: list[tuple[dict, bytes]], n_shards: int = 2) -> Path:
    buffer = b"".join(data for _, data in weights)
    cut = [round(i * len(buffer) / n_shards) for i in range(n_shards + 1)]
    paths = []
    for i in range(n_shards):
        shard = f"{name}.shard{i}.bin"
        (folder / shard).write_bytes(buffer[cut[i] : cut[i + 1]])
        paths.append(shard)
    manifest = folder / f"{name}-weights_manifest.json"
    manifest.write_text(json.dumps([{"paths": paths, "weights": [spec for spec, _ in weights]}]))
    return manifest


def test_dequantize_known_numbers():
    spec = {
        "name": "w",
        "shape": [2, 2],
        "dtype": "float32",
        "quantization": {"dtype": "uint8", "scale": 0.5, "min": -1.0},
    }
    out = dequantize(bytes([0, 1, 2, 255]), spec)
    assert out.dtype == np.float32 and out.shape == (2, 2)
    assert out.tolist() == [[-1.0, -0.5], [0.0, 126.5]]
    spec16 = {
        "name": "u",
        "shape": [2],
        "dtype": "float32",
        "quantization": {"dtype": "uint16", "scale": 0.25, "min": 2.0},
    }
    assert dequantize(np.array([0, 1000], "<u2").tobytes(), spec16).tolist() == [2.0, 252.0]
    spec_h = {"name": "h", "shape": [3], "dtype": "float32", "quantization": {"dtype": "float16"}}
    assert dequantize(np.array([1.5, -2.0, 0.25], "<f2").tobytes(), spec_h).tolist() == [1.5, -2.0, 0.25]
    plain = {"name": "p", "shape": [2], "dtype": "float32"}
    assert dequantize(np.array([0.1, -3.0], "<f4").tobytes(), plain).tolist() == pytest.approx([0.1, -3.0])
    # TF.js computes q * scale + min in float64 and then stores float32
    odd = {
        "name": "o",
        "shape": [1],
        "dtype": "float32",
        "quantization": {"dtype": "uint8", "scale": 0.0057930146946626555, "min": -0.7125408074435067},
    }
    assert dequantize(bytes([200]), odd)[0] == np.float32(200 * 0.0057930146946626555 - 0.7125408074435067)


@pytest.mark.parametrize(
    "spec, data",
    [
        (
            {"name": "a", "shape": [2], "dtype": "float32", "quantization": {"dtype": "uint8", "scale": 1.0}},
            b"\0\0",
        ),
        ({"name": "b", "shape": [2], "dtype": "float32", "quantization": {"dtype": "int4"}}, b"\0"),
        ({"name": "c", "shape": [3], "dtype": "float32"}, b"\0" * 8),
        ({"name": "d", "shape": [1], "dtype": "string"}, b"\0" * 4),
    ],
)
def test_dequantize_rejects_bad_specs(spec, data):
    with pytest.raises(ValueError):
        dequantize(data, spec)


def test_read_tfjs_weights_across_shards(tmp_path):
    q = np.arange(12, dtype=np.uint8)
    f = np.array([1.25, -2.5, 3.0], "<f4")
    manifest = _write_manifest(
        tmp_path,
        "tiny",
        [
            (
                {
                    "name": "x/filters",
                    "shape": [1, 2, 3, 2],
                    "dtype": "float32",
                    "quantization": {"dtype": "uint8", "scale": 0.1, "min": -0.5},
                },
                q.tobytes(),
            ),
            ({"name": "x/bias", "shape": [3], "dtype": "float32"}, f.tobytes()),
        ],
        n_shards=3,
    )
    w = read_tfjs_weights(manifest)
    assert list(w) == ["x/filters", "x/bias"]
    np.testing.assert_array_equal(
        w["x/filters"], (q.astype(np.float64) * 0.1 - 0.5).astype(np.float32).reshape(1, 2, 3, 2)
    )
    np.testing.assert_array_equal(w["x/bias"], f)


def test_read_tfjs_weights_errors(tmp_path):
    spec = {"name": "b", "shape": [4], "dtype": "float32"}
    manifest = _write_manifest(tmp_path, "short", [(spec, b"\0" * 12)], n_shards=1)
    with pytest.raises(InputError, match="shards end"):
        read_tfjs_weights(manifest)
    manifest = _write_manifest(tmp_path, "long", [(spec, b"\0" * 20)], n_shards=1)
    with pytest.raises(InputError, match="unused bytes"):
        read_tfjs_weights(manifest)
    (tmp_path / "long.shard0.bin").unlink()
    with pytest.raises(InputError, match="shard"):
        read_tfjs_weights(manifest)
    with pytest.raises(InputError):
        read_tfjs_weights(tmp_path / "missing-weights_manifest.json")


def test_layouts_follow_tfjs_semantics():
    rng = np.random.default_rng(0)
    w = {
        "dense1/conv0/depthwise_filter": rng.normal(size=(3, 3, 4, 1)).astype(np.float32),
        "dense1/conv0/pointwise_filter": rng.normal(size=(1, 1, 4, 6)).astype(np.float32),
        "dense0/conv0/filters": rng.normal(size=(3, 3, 3, 5)).astype(np.float32),
        "fc/weights": rng.normal(size=(256, 7)).astype(np.float32),
    }
    sd = to_torch_state_dict("expression", w)
    assert sd["features.dense1.conv0.depthwise.weight"].shape == (4, 1, 3, 3)
    assert (
        sd["features.dense1.conv0.depthwise.weight"][2, 0, 1, 0]
        == w["dense1/conv0/depthwise_filter"][1, 0, 2, 0]
    )
    assert (
        sd["features.dense1.conv0.pointwise.weight"][5, 3, 0, 0]
        == w["dense1/conv0/pointwise_filter"][0, 0, 3, 5]
    )
    assert sd["features.dense0.conv0.weight"][4, 2, 0, 1] == w["dense0/conv0/filters"][0, 1, 2, 4]
    assert sd["fc.weight"].shape == (7, 256) and sd["fc.weight"][3, 100] == w["fc/weights"][100, 3]
    rec = to_torch_state_dict(
        "recognition",
        {"fc": w["fc/weights"][:, :5].copy(), "conv32_1/conv1/scale/biases": np.ones(3, np.float32)},
    )
    assert rec["fc.weight"].shape == (5, 256) and "conv32_1.conv1.scale.bias" in rec
    with pytest.raises(ValueError):
        to_torch_state_dict("expression", {"bogus/x": np.zeros(1, np.float32)})
    with pytest.raises(ValueError):
        to_torch_state_dict("age", {})


def _tfjs_specs_of_expression_net() -> list[tuple[str, tuple[int, ...]]]:
    """TF.js names and shapes of FaceExpressionNet, derived from the torch module (converter inverse)."""
    out = []
    for key, p in FaceExpressionNet().state_dict().items():
        parts = key.split(".")
        if parts[0] == "features":
            parts = parts[1:]
        shape = tuple(p.shape)
        if key == "fc.weight":
            out.append(("fc/weights", (shape[1], shape[0])))
        elif parts[-2:] == ["depthwise", "weight"]:
            out.append(("/".join(parts[:-2]) + "/depthwise_filter", (3, 3, shape[0], 1)))
        elif parts[-2:] == ["pointwise", "weight"]:
            out.append(("/".join(parts[:-2]) + "/pointwise_filter", (1, 1, shape[1], shape[0])))
        elif parts[-1] == "weight":
            out.append(("/".join(parts[:-1]) + "/filters", (shape[2], shape[3], shape[1], shape[0])))
        else:
            out.append(("/".join(parts), shape))
    return out


def test_convert_faceapi_on_a_handmade_package(tmp_path):
    pkg = tmp_path / "package"
    (pkg / "model").mkdir(parents=True)
    (pkg / "package.json").write_text(json.dumps({"name": "@vladmandic/face-api", "version": "9.9.9"}))
    rng = np.random.default_rng(1)
    weights, expected = [], {}
    for name, shape in _tfjs_specs_of_expression_net():
        if name.endswith("bias"):
            v = rng.normal(size=shape).astype("<f4")
            weights.append(({"name": name, "shape": list(shape), "dtype": "float32"}, v.tobytes()))
            expected[name] = v
        else:
            q = rng.integers(0, 256, size=shape, dtype=np.uint8)
            quant = {"dtype": "uint8", "scale": 0.01, "min": -1.28}
            weights.append(
                ({"name": name, "shape": list(shape), "dtype": "float32", "quantization": quant}, q.tobytes())
            )
            expected[name] = (q.astype(np.float64) * 0.01 - 1.28).astype(np.float32)
    _write_manifest(pkg / "model", "face_expression_model", weights, n_shards=2)

    written = convert_faceapi(pkg, tmp_path / "out", nets=("expression",))
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(written["expression"]), "pt") as f:
        meta = json.loads(f.metadata()["mien_faceapi_provenance"])
    assert meta["source_package"] == "@vladmandic/face-api" and meta["source_version"] == "9.9.9"
    shard0 = (pkg / "model" / "face_expression_model.shard0.bin").read_bytes()
    assert (
        f"face_expression_model.shard0.bin sha256:{hashlib.sha256(shard0).hexdigest()}"
        in meta["source_shards"]
    )

    net = FaceExpressionNet()
    net.load_state_dict(load_file(str(written["expression"])), strict=True)
    np.testing.assert_array_equal(net.fc.weight.detach().numpy(), expected["fc/weights"].T)
    np.testing.assert_array_equal(
        net.features.dense2.conv3.depthwise.weight.detach().numpy(),
        expected["dense2/conv3/depthwise_filter"].transpose(2, 3, 0, 1),
    )
    np.testing.assert_array_equal(
        net.features.dense0.conv0.bias.detach().numpy(), expected["dense0/conv0/bias"]
    )
    # byte-for-byte reproducible, also when pointed at the model/ folder
    again = convert_faceapi(pkg / "model", tmp_path / "out2", nets=("expression",))
    assert again["expression"].read_bytes() == written["expression"].read_bytes()
    with pytest.raises(InputError):
        convert_faceapi(pkg, tmp_path / "out3", nets=("recognition",))
    with pytest.raises(InputError):
        convert_faceapi(tmp_path / "nope", tmp_path / "out4")


def test_convert_main_reports_input_errors(tmp_path, capsys):
    from mien.models.faceapi.convert import main

    assert main([str(tmp_path / "nope"), str(tmp_path / "out")]) == 2
    assert "not a folder" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------------
# Shipped assets
# ------------------------------------------------------------------------------------------------------


def test_shipped_weights_provenance():
    from safetensors import safe_open

    for filename, model, dtype in [
        ("face_expression.safetensors", "face_expression_model", "float32"),
        ("face_recognition.safetensors", "face_recognition_model", "float16"),
    ]:
        path = asset_path(filename)
        with safe_open(str(path), "pt") as f:
            meta = json.loads(f.metadata()["mien_faceapi_provenance"])
            assert f.get_tensor(next(iter(f.keys()))).dtype == getattr(torch, dtype)
        assert meta["source_package"] == "@vladmandic/face-api" and meta["source_version"] == "1.7.15"
        assert meta["source_model"] == model and meta["storage_dtype"] == dtype
        shard = f"{model}.bin"
        assert meta["source_shards"] == f"{shard} sha256:{SOURCE_SHARDS[shard]}"
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        provenance = asset_path("PROVENANCE.md").read_text()
        assert digest in provenance and SOURCE_SHARDS[shard] in provenance
    assert "MIT License" in asset_path("LICENSE").read_text()


# ------------------------------------------------------------------------------------------------------
# Behaviour on real faces
# ------------------------------------------------------------------------------------------------------


def _probs(net, files) -> np.ndarray:
    from mien.models.faceapi.reference import load_rgb

    with torch.no_grad():
        return net.predict_proba(to_batch_tensor([load_rgb(f) for f in files], 112)).numpy()


def test_ckplus_happy_faces_score_happier_than_sad_faces(expression_net, _faceapi_data):
    root = _faceapi_data / "expressions" / "ckplus48"
    happy = _probs(expression_net, sorted((root / "happy").glob("*.png")))
    sad = _probs(expression_net, sorted((root / "sadness").glob("*.png")))
    i_happy, i_sad = EXPRESSION_LABELS.index("happy"), EXPRESSION_LABELS.index("sad")
    assert happy[:, i_happy].mean() > sad[:, i_happy].mean() + 0.5
    assert sad[:, i_sad].mean() > happy[:, i_sad].mean() + 0.3
    assert (happy.argmax(1) == i_happy).mean() > 0.9


def test_recognition_same_subject_is_closer(recognition_net, _faceapi_data):
    from mien.models.faceapi.reference import load_rgb

    root = _faceapi_data / "expressions" / "ckplus48"
    subjects = {}
    for f in sorted(root.glob("*/*.png")):
        subjects.setdefault(f.name.split("_")[0], []).append(f)
    chosen = [s for s, fs in subjects.items() if len({f.parent.name for f in fs}) >= 2][:8]
    files = [f for s in chosen for f in subjects[s]]
    labels = np.array([f.name.split("_")[0] for f in files])
    with torch.no_grad():
        d = recognition_net(to_batch_tensor([load_rgb(f) for f in files], 150))
    dist = torch.cdist(d, d).numpy()
    same = labels[:, None] == labels[None, :]
    off_diag = ~np.eye(len(files), dtype=bool)
    assert dist[same & off_diag].mean() + 0.1 < dist[~same].mean()


def test_expression_emotions_resize_and_batch_like_run():
    from mien.heads.faceapi import ExpressionHead, resize_crops

    crops = np.random.default_rng(0).integers(0, 256, (5, 64, 64, 3), dtype=np.uint8)
    head = ExpressionHead("cpu", backend="torch")
    want = head.run(resize_crops(crops, 112))[0]
    got = head.emotions(crops, batch=2)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert resize_crops(crops, 64) is crops and resize_crops(crops[:0], 112).shape == (0, 112, 112, 3)
    with pytest.raises(ValueError, match="expected uint8 face crops"):
        head.emotions(crops.astype(np.float32) / 255)
