"""Emotion/expression embedding and identity re-identification inside ``mien.analyze``."""

import numpy as np
import pytest

import mien

pytest.importorskip("torch")
pytest.importorskip("safetensors")


def test_emotion_columns_on_real_faces(shared_data):
    happy = mien.analyze(shared_data / "samples/0-f15-hao-ph.jpg", emotion=True)  # posed happy, open mouth
    assert len(happy) == 1
    labels = ["neutral", "happy", "sad", "angry", "fearful", "disgusted", "surprised"]
    probs = np.array([happy.extra[f"emotion_{k}"][0] for k in labels])
    assert probs.sum() == pytest.approx(1.0, abs=1e-5)
    assert labels[int(probs.argmax())] == "happy"
    surprise = mien.analyze(shared_data / "samples/0-f1-su-ph.jpg", emotion=True)
    assert surprise.extra["emotion_surprised"][0] > happy.extra["emotion_surprised"][0]
    emb = happy.extra["expression_embedding"]
    assert emb.shape == (1, 256) and emb.dtype == np.float32 and (emb >= 0).all()
    assert happy.meta["extra_columns"]["emotion_happy"]["unit"] == "probability"
    assert len(happy.meta["models"]["expression"]["sha256"]) == 64


def test_emotion_result_round_trips(tmp_path, shared_data):
    res = mien.analyze(shared_data / "samples/single_face.mp4", emotion=True, end=0.5)
    assert res.extra["expression_embedding"].shape == (len(res), 256)
    res.to_parquet(tmp_path / "r.parquet")
    assert mien.read_results(tmp_path / "r.parquet").equals(res)
    none = mien.analyze(shared_data / "samples/no_face.mp4", emotion=True, end=0.5)
    assert len(none) == 0 and none.extra["expression_embedding"].shape == (0, 256)


@pytest.fixture(scope="module")
def leave_and_return(shared_data, tmp_path_factory):
    """A real clip in which a face is seen, leaves (no-face footage), and comes back."""
    import cv2

    from mien.io.video import VideoSource
    from mien.io.writer import VideoWriter

    face = [f.image for f in VideoSource(shared_data / "samples/single_face.mp4", end=1.0)]
    empty = [cv2.resize(f.image, (640, 360), interpolation=cv2.INTER_AREA)
             for f in VideoSource(shared_data / "samples/no_face.mp4", end=1.0)]
    path = tmp_path_factory.mktemp("reid") / "leave_and_return.mp4"
    with VideoWriter(path, 30) as w:
        for img in face + empty[:20] + face[::-1]:
            w.write(img)
    return path


def test_face_that_returns_keeps_its_id(leave_and_return):
    with_reid = mien.analyze(leave_and_return, identity=True)
    frames = np.unique(with_reid.frame)
    assert np.diff(frames).max() > 10  # the face really left
    assert np.unique(with_reid.face_id).tolist() == [0]
    assert list(with_reid.meta["identity"]["descriptors"]) == ["0"]
    without = mien.analyze(leave_and_return, identity=False)
    assert np.unique(without.face_id).tolist() == [0, 1]
    assert "identity" not in without.meta


def test_different_people_are_not_merged(shared_data, tmp_path):
    import cv2

    from mien.io.video import VideoSource
    from mien.io.writer import VideoWriter

    a = [f.image for f in VideoSource(shared_data / "samples/single_face.mp4", end=0.7)]
    b = [cv2.resize(f.image, (640, 360)) for f in VideoSource(shared_data / "videos/talking/face_2.mp4", end=0.7)]
    blank = [np.zeros((360, 640, 3), np.uint8)] * 10
    path = tmp_path / "two_people.mp4"
    with VideoWriter(path, 30) as w:
        for img in a + blank + b:
            w.write(img)
    res = mien.analyze(path, identity=True)
    assert np.unique(res.face_id).tolist() == [0, 1]


def test_action_units_on_posed_faces(tmp_path, shared_data):
    happy = mien.analyze(shared_data / "samples/0-f15-hao-ph.jpg", au=True)
    anger = mien.analyze(shared_data / "samples/15-f13-anc-ph.jpg", au=True)
    surprise = mien.analyze(shared_data / "samples/0-f1-su-ph.jpg", au=True)
    names = happy.meta["au"]["names"]
    assert {"AU01", "AU04", "AU06", "AU12", "AU25"} <= set(names)
    assert "emotion_happy" not in happy.extra  # --au alone does not add emotion columns
    assert happy.extra["AU12"][0] > 0.5 > anger.extra["AU12"][0]
    assert anger.extra["AU04"][0] > 0.5 > happy.extra["AU04"][0]
    assert surprise.extra["AU02"][0] > 0.5 > anger.extra["AU02"][0]
    p = tmp_path / "happy.csv"
    happy.to_openface(p)
    back = mien.read_openface(p)
    assert back.extra["AU12_c"][0] == 1 and back.extra["AU04_c"][0] == 0
    happy.to_parquet(tmp_path / "h.parquet")
    assert mien.read_results(tmp_path / "h.parquet").equals(happy)


def test_au_baseline_normalises_per_track(shared_data):
    plain = mien.analyze(shared_data / "videos/talking/face_3.mp4", au=True, end=2.0)
    base = mien.analyze(shared_data / "videos/talking/face_3.mp4", au=True, au_baseline=True, end=2.0)
    assert base.meta["au"]["baseline"] is True and plain.meta["au"]["baseline"] is False
    names = plain.meta["au"]["names"]
    a = np.stack([plain.extra[n] for n in names], 1)
    b = np.stack([base.extra[n] for n in names], 1)
    assert a.shape == b.shape and np.isfinite(b).all()
    assert np.abs(a - b).max() > 0.05  # normalisation changes the outputs
    # the track's median frame maps to the population mean: its AUs are "typical", not extreme
    assert (np.median(b, 0) < 0.9).all()


def test_tight_face_crop_images_are_found(shared_data):
    """48×48 CK+ crops: the face fills the image, so MediaPipe needs the padded retry."""
    r = mien.analyze(sorted((shared_data / "expressions/ckplus48/happy").glob("*.png"))[0])
    assert len(r) == 1
    assert (r.bbox[0, :2] > -10).all() and (r.bbox[0, 2:] < 58).all()


def test_analyze_with_tokenizer_adds_expression_tokens(tmp_path, shared_data):
    pytest.importorskip("timm")
    import torch

    from mien.heads.tokens import TokenExtractor
    from mien.models import create_model
    from mien.models.tokenizer import save_pretrained

    torch.manual_seed(0)
    save_pretrained(create_model("tokenizer-tiny"), tmp_path / "tok")
    res = mien.analyze(shared_data / "samples/single_face.mp4", tokenizer=str(tmp_path / "tok"), end=0.6)
    tok = res.extra["expression_token"]
    assert tok.shape == (len(res), 32) and tok.dtype == np.float32
    assert np.allclose(np.linalg.norm(tok, axis=1), 1, atol=1e-4)
    assert set(res.meta["models"]["tokenizer"]["files"]) == {"config.json", "model.safetensors"}
    # the column equals what the extractor gives on the same crops, frame by frame
    from mien.io.video import VideoSource

    ext = TokenExtractor(str(tmp_path / "tok"))
    frames = {f.index: f.image for f in VideoSource(shared_data / "samples/single_face.mp4", end=0.6)}
    crops = np.stack([ext.crop(frames[int(fr)], box, lm)
                      for fr, box, lm in zip(res.frame, res.bbox, res.landmarks, strict=True)])
    assert np.allclose(ext(crops), tok, atol=1e-5)
    res.to_parquet(tmp_path / "r.parquet")
    assert mien.read_results(tmp_path / "r.parquet").equals(res)
