"""The main job on real faces from ../shared/data."""

import numpy as np
import PIL.Image
import pytest

import mien

TALKING = ["videos/talking/face_1.mp4", "videos/talking/Input__00010.mp4", "videos/talking/Audio_Source__00015.mp4",
           "videos/talking/WDA_KatieHill_000.mp4", "videos/expressive/driving_d11.mp4"]


@pytest.mark.parametrize("rel", TALKING)
def test_face_found_in_talking_head_clips(analyzed, rel):
    r = analyzed(rel)
    frames = r.meta["frames_processed"]
    assert frames > 50
    assert len(np.unique(r.frame)) >= 0.95 * frames
    assert len(np.unique(r.face_id)) == 1  # one person, one track
    assert r.landmarks.shape == (len(r), 478, 3) and r.landmarks.dtype == np.float32
    w, h = r.meta["width"], r.meta["height"]
    inside = ((r.landmarks[..., 0] > -0.05 * w) & (r.landmarks[..., 0] < 1.05 * w)
              & (r.landmarks[..., 1] > -0.05 * h) & (r.landmarks[..., 1] < 1.05 * h))
    assert inside.mean() > 0.99
    assert np.isfinite(r.yaw_deg).all() and (np.abs(r.yaw_deg) < 60).all()
    assert (r.tz_mm > 100).all()  # in front of the camera
    assert np.all(np.diff(r.t_sec) > 0)


def test_no_face_video_gives_zero_rows(analyzed):
    r = analyzed("samples/no_face.mp4")
    assert len(r) == 0
    assert r.meta["frames_processed"] > 50
    assert r.landmarks.shape == (0, 478, 3)


@pytest.mark.parametrize("rel,face_first", [("samples/face_noface.mov", True), ("samples/noface_face.mov", False)])
def test_face_coming_and_going(analyzed, rel, face_first):
    r = analyzed(rel)
    n = r.meta["frames_processed"]
    frames = np.unique(r.frame)
    assert 0.2 * n < len(frames) < 0.8 * n
    assert np.all(np.diff(frames) == 1)  # one contiguous face segment
    if face_first:
        assert frames[0] <= 2 and frames[-1] < n - 10
    else:
        assert frames[0] > 10 and frames[-1] >= n - 3


def test_multi_face_image(analyzed):
    r = analyzed("samples/multi_face.jpg", max_faces=5)
    assert len(r) == 5
    assert sorted(r.face_id.tolist()) == [0, 1, 2, 3, 4]
    assert (r.confidence > 0.5).all()
    centres = (r.bbox[:, :2] + r.bbox[:, 2:]) / 2
    d = np.linalg.norm(centres[:, None] - centres[None], axis=-1) + np.eye(5) * 1e9
    assert d.min() > 30  # five different faces, not one face five times


def test_grayscale_large_photo(analyzed):
    r = analyzed("samples/BWPictureHuman.jpg")
    assert len(r) == 1
    assert r.meta["width"] == 2560  # results in source pixels although MediaPipe saw a downscaled copy
    assert 700 < r.bbox[0, 0] < r.bbox[0, 2] < 1100


def _analyze_array(tmp_path, img, name):
    p = tmp_path / name
    PIL.Image.fromarray(np.ascontiguousarray(img)).save(p)
    r = mien.analyze(p)
    assert len(r) == 1
    return r


def test_head_pose_frontal_mirror_and_roll(tmp_path, shared_data):
    img = np.asarray(PIL.Image.open(shared_data / "samples/single_face.jpg").convert("RGB"))
    r = _analyze_array(tmp_path, img, "orig.png")
    assert abs(r.yaw_deg[0]) < 10 and abs(r.pitch_deg[0]) < 10 and abs(r.roll_deg[0]) < 10
    m = _analyze_array(tmp_path, img[:, ::-1], "mirror.png")
    assert np.sign(m.yaw_deg[0]) == -np.sign(r.yaw_deg[0]) and abs(r.yaw_deg[0]) > 2
    assert np.sign(m.roll_deg[0]) == -np.sign(r.roll_deg[0]) and abs(r.roll_deg[0]) > 1
    assert abs(m.yaw_deg[0] + r.yaw_deg[0]) < 2 and abs(m.roll_deg[0] + r.roll_deg[0]) < 2
    # clockwise image rotation tilts the top of the head toward the image's right: roll increases by ~15°
    rot = np.asarray(PIL.Image.fromarray(img).rotate(-15, resample=PIL.Image.BILINEAR))
    q = _analyze_array(tmp_path, rot, "rot.png")
    assert 12 < q.roll_deg[0] - r.roll_deg[0] < 18


def test_gaze_follows_the_eyes(analyzed):
    """In the sample clip the subject looks far to the image's left around 6 s, with the head turned less."""
    r = analyzed("samples/WolfgangLanger_Pexels.mp4")
    m = (r.t_sec > 6.1) & (r.t_sec < 6.3)
    assert (r.gaze_yaw_deg[m] > r.yaw_deg[m] + 5).all()
    assert np.isfinite(r.gaze_left_pitch_deg[r.gaze_valid]).all()
    assert np.isnan(r.gaze_left_pitch_deg[~r.gaze_valid]).all()


def test_blinks_detected(analyzed):
    r = analyzed("videos/talking/WDA_AlexandriaOcasioCortez_000.mp4")
    ev = r.blink_events()
    assert len(ev) >= 4
    assert (ev.duration_sec < 0.5).all()
    ear = (r.ear_left + r.ear_right) / 2
    assert ear[r.blink].mean() < 0.7 * np.median(ear)


def test_every_and_window(analyzed):
    full = analyzed("samples/single_face.mp4")
    sub = analyzed("samples/single_face.mp4", every=2, start=0.5, end=2.0)
    assert (sub.frame % 2 == 0).all()
    assert sub.t_sec.min() >= 0.5 and sub.t_sec.max() <= 2.0
    common = np.intersect1d(full.frame, sub.frame)
    assert len(common) >= 0.9 * len(sub)
    a = full.t_sec[np.isin(full.frame, common)]
    b = sub.t_sec[np.isin(sub.frame, common)]
    assert np.allclose(a, b)


def test_metadata_records_models_and_source(analyzed):
    r = analyzed("samples/single_face.mp4")
    assert r.meta["fps"] == pytest.approx(30.0)
    assert (r.meta["width"], r.meta["height"]) == (640, 360)
    assert r.meta["landmark_scheme"] == "mediapipe478"
    for m in r.meta["models"].values():
        assert len(m["sha256"]) == 64
    assert r.meta["corrupt_frames"] == 0


def test_latest_heads_finishes_each_batch_once(shared_data, torch_one_thread):
    """A live preview asks for the heads' latest values once per frame; while no newer batch has finished, the
    AU head's per-track post-step (features + MLP) runs once per batch and the values are the uncached ones."""
    import av

    from mien.io.video import Frame
    from mien.pipelines.analyze import AnalyzeOptions
    from mien.pipelines.frame_analyzer import FrameAnalyzer

    with av.open(str(shared_data / "samples/single_face.mp4")) as c:
        frames = [f.to_ndarray(format="rgb24") for _, f in zip(range(2), c.decode(video=0), strict=False)]
    fa = FrameAnalyzer(640, 360, AnalyzeOptions(au=True, identity=False, batch_size=1), static=True)
    head = fa.head("au")
    calls = []
    finish = head.finish
    head.finish = lambda cols, ids: calls.append(len(ids)) or finish(cols, ids)

    def same(a, b):
        np.testing.assert_array_equal(a[0], b[0])
        assert a[1].keys() == b[1].keys()
        for k, v in a[1].items():
            np.testing.assert_array_equal(v, b[1][k])

    try:
        fa.process(Frame(0, 0.0, frames[0]))
        asks = [fa.latest_heads() for _ in range(3)]
        assert calls == [1]  # finished once for three asks
        assert len(asks[0][0]) == 1 and "AU12" in asks[0][1]
        for a in asks[1:]:
            same(a, asks[0])
        fa.latest_heads(finish=("expression",))  # other post-steps asked for: recomputed, without the AU head's
        assert calls == [1]
        fa.process(Frame(1, 1 / 30, frames[1]))  # a newer batch: finished once more
        cached = [fa.latest_heads() for _ in range(2)]
        assert calls == [1, 1]
        fa._latest = None  # forget the cache: the uncached answer is the same
        same(fa.latest_heads(), cached[1])
        assert calls == [1, 1, 1]
    finally:
        fa.close()
