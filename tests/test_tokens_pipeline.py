"""Expression tokens of videos: TokenExtractor (for ``mien analyze --tokenizer``), token plots, ``mien tokens``."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

from mien.cli.main import main as cli  # noqa: E402

pytestmark = pytest.mark.usefixtures("torch_one_thread")

VIDEO = "videos/talking/Input__00010.mp4"  # 224², 25 fps, one talking face


# ---- TokenExtractor -----------------------------------------------------------------------------------------
def test_extractor_crops_match_training_crops(tiny_tokenizer_dir, shared_data, analyzed):
    """The extractor's crop is the training data's crop (load_face_crops), pixel for pixel."""
    from mien.heads.tokens import TokenExtractor
    from mien.io.video import VideoSource
    from mien.pipelines.tokens import first_faces
    from mien.tasks.tokenizer import load_face_crops

    ex = TokenExtractor(tiny_tokenizer_dir)
    assert (ex.input_size, ex.dim, ex.max_subjects, ex.crop_contract) == (64, 32, 16, "aligned-ffhq-0.0")
    res = analyzed(VIDEO, end=0.5)
    faces = first_faces(res)
    mine = np.stack([ex.crop(fr.image, *faces[fr.index])
                     for fr in VideoSource(shared_data / VIDEO, end=0.5) if fr.index in faces])
    ref = load_face_crops(shared_data / VIDEO, 64, end=0.5)
    assert mine.shape == ref.shape and mine.dtype == np.uint8 and len(mine) >= 10
    np.testing.assert_array_equal(mine, ref)


def test_extractor_tokens_shape_norm_batching(tiny_tokenizer_dir, shared_data, analyzed):
    from mien.heads.tokens import TOKEN_COLUMN, TokenExtractor
    from mien.io.video import VideoSource
    from mien.pipelines.tokens import first_faces

    ex = TokenExtractor(tiny_tokenizer_dir, "cpu", batch_size=4)
    faces = first_faces(analyzed(VIDEO, end=0.5))
    crops = np.stack([ex.crop(fr.image, *faces[fr.index])
                      for fr in VideoSource(shared_data / VIDEO, end=0.5) if fr.index in faces])
    z = ex(crops)  # split into batches of 4 internally
    assert z.shape == (len(crops), 32) and z.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-5)
    single = np.concatenate([ex(crops[i:i + 1]) for i in range(len(crops))])
    np.testing.assert_allclose(z, single, atol=1e-5)
    big = TokenExtractor(tiny_tokenizer_dir, batch_size=64)(crops)
    np.testing.assert_allclose(z, big, atol=1e-5)
    assert not np.allclose(z[0], z[-1], atol=1e-7)  # different frames, different tokens
    assert ex(crops[:0]).shape == (0, 32)
    assert ex.name == "mien-tokenizer:tiny" and len(ex.files) == 2
    assert TOKEN_COLUMN == "expression_token" and "32" in ex.column_meta()["description"]
    with pytest.raises(ValueError, match="expected crops"):
        ex(crops[:, :32])


def test_extractor_subjects_and_bad_inputs(tiny_tokenizer_dir, tmp_path):
    import mien
    from mien.errors import InputError
    from mien.heads.tokens import TokenExtractor
    from mien.models.tokenizer import save_pretrained

    crops = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    a, b = TokenExtractor(tiny_tokenizer_dir, subject_id=0), TokenExtractor(tiny_tokenizer_dir, subject_id=5)
    assert not np.allclose(a(crops), b(crops))  # the subject embedding is attended to
    tok, faces = a.reconstruct(crops, target_subject=5)
    assert tok.shape == (3, 32) and faces.shape == (3, 64, 64, 3) and faces.dtype == np.uint8
    np.testing.assert_array_equal(faces, a.decode(tok, 5))
    with pytest.raises(ValueError, match="out of range"):
        TokenExtractor(tiny_tokenizer_dir, subject_id=16)
    with pytest.raises(ValueError, match="out of range"):
        a.decode(tok, -1)
    with pytest.raises(InputError, match="no such tokenizer folder"):
        TokenExtractor(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="not a tokenizer export"):
        TokenExtractor(tmp_path / "empty")
    broken = save_pretrained(mien.create_model("tokenizer-tiny"), tmp_path / "broken")
    (broken / "model.safetensors").write_bytes(b"\0" * 100)
    with pytest.raises(InputError, match="not a loadable tokenizer export"):
        TokenExtractor(broken)
    save_pretrained(mien.create_model("tokenizer-predictor-tiny"), tmp_path / "pred")
    with pytest.raises(InputError, match="not an expression tokenizer"):
        TokenExtractor(tmp_path / "pred")
    inv = TokenExtractor(mien.create_model("tokenizer-tiny", max_subjects=0))
    assert inv.subject_id is None and inv(crops).shape == (3, 32)


# ---- plots --------------------------------------------------------------------------------------------------
def test_cosine_and_pca():
    from mien.viz.tokens import cosine_to_reference, pca_2d

    rng = np.random.default_rng(1)
    z = rng.normal(size=(20, 8))
    cos = cosine_to_reference(z, 7)
    assert cos[7] == 1.0 and cos.shape == (20,) and np.all(np.abs(cos) <= 1)
    zn = z / np.linalg.norm(z, axis=1, keepdims=True)
    np.testing.assert_allclose(cos, zn @ zn[7], atol=1e-12)
    xy, ratio = pca_2d(z)
    c = z - z.mean(0)
    assert xy.shape == (20, 2) and ratio[0] >= ratio[1] > 0
    np.testing.assert_allclose(np.var(xy, axis=0) * 20 / (c ** 2).sum(), ratio, rtol=1e-9)
    line = np.outer(np.arange(5.0), np.ones(4))  # rank 1: second component is 0
    xy1, r1 = pca_2d(line)
    np.testing.assert_allclose(r1, [1.0, 0.0], atol=1e-12) and np.testing.assert_allclose(xy1[:, 1], 0, atol=1e-9)
    assert pca_2d(z[:1])[0].shape == (1, 2)
    with pytest.raises(ValueError):
        cosine_to_reference(z, 20)


def test_tokens_plot_cli(tiny_tokenizer_dir, shared_data, tmp_path, capsys):
    from mien.pipelines.tokens import plot_video_tokens

    out, npz = tmp_path / "plots" / "plot.png", tmp_path / "t.npz"
    rc = cli(["tokens", "plot", str(shared_data / VIDEO), "--tokenizer", str(tiny_tokenizer_dir), "-o", str(out),
              "--end", "1.0", "--tokens-out", str(npz)])
    assert rc == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    d = np.load(npz)
    assert d["tokens"].shape == (len(d["frame"]), 32) and len(d["frame"]) >= 20
    assert "reference frame 0" in capsys.readouterr().out
    r = plot_video_tokens(shared_data / VIDEO, tiny_tokenizer_dir, tmp_path / "p2.png", reference_frame=7, end=1.0)
    ref = int(np.flatnonzero(d["frame"] == r["reference_frame"])[0])
    assert r["reference_frame"] == 7 and r["cosine"][ref] == pytest.approx(1.0, abs=1e-12)
    assert r["cosine"].shape == (r["tokens"],) and r["pca"].shape == (r["tokens"], 2)
    assert not list(tmp_path.glob("**/.*tmp*"))  # atomic: no temporary left over
    # errors: one line, exit status 2
    assert cli(["tokens", "plot", str(shared_data / VIDEO), "--tokenizer", str(tmp_path / "nope"),
                "-o", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mien: error:") and err.count("\n") == 1 and not (tmp_path / "x.png").exists()
    assert cli(["tokens", "plot", str(shared_data / VIDEO), "--tokenizer", str(tiny_tokenizer_dir),
                "-o", str(tmp_path / "x.png"), "--subject", "99"]) == 2
    assert "out of range" in capsys.readouterr().err
