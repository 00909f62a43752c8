"""Videos with a display matrix (portrait phone clips) are read, analysed and drawn in displayed orientation.

The rotated clips are made here with PyAV (``VideoStream.set_display_rotation``, recent PyAV), which writes the
display matrix into the MP4 track header as phones do, both when encoding and when re-muxing packets; no ffmpeg
CLI is needed (none is installed on the development machine).
"""

import av
import numpy as np
import pytest

from mien.io.video import VideoSource, display_orientation

pytestmark = pytest.mark.skipif(not hasattr(av.video.stream.VideoStream, "set_display_rotation"),
                                reason="this PyAV cannot write a display matrix")


def _write(path, frames, fps=30, rotation=0, hflip=False):
    """Lossless (x264 qp 0) MP4 of stored RGB frames carrying a display matrix."""
    with av.open(str(path), "w") as out:
        st = out.add_stream("libx264", rate=fps)
        st.height, st.width = frames[0].shape[:2]
        st.pix_fmt = "yuv420p"
        st.options = {"qp": "0", "preset": "ultrafast"}
        if rotation or hflip:
            st.set_display_rotation(rotation, hflip=hflip)
        for im in frames:
            out.mux(st.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(im), format="rgb24")))
        out.mux(st.encode())


def _pattern(h=48, w=80):
    """An image whose every flip and quarter turn differs: four colour blocks of distinct sizes."""
    im = np.zeros((h, w, 3), np.uint8)
    im[: h // 3, : w // 4] = (255, 0, 0)
    im[: h // 3, w // 4:] = (0, 255, 0)
    im[h // 3:, : w // 2] = (0, 0, 255)
    im[h // 3:, w // 2:] = (255, 255, 0)
    return im


@pytest.mark.parametrize("hflip", [False, True])
@pytest.mark.parametrize("rotation", [-90, 0, 90, 180])
def test_display_matrix_applied_like_a_player(tmp_path, rotation, hflip):
    """Frames come out as PyAV/FFmpeg define the matrix: turned ``rotation`` degrees CCW, then mirrored."""
    stored = _pattern()
    p = tmp_path / "clip.mp4"
    _write(p, [stored] * 3, rotation=rotation, hflip=hflip)
    expected = np.rot90(stored, rotation // 90)
    if hflip:
        expected = expected[:, ::-1]
    src = VideoSource(p)
    assert (src.info.height, src.info.width) == expected.shape[:2]
    with av.open(str(p)) as c:  # recorded as FFmpeg reports it (a mirrored matrix's angle is FFmpeg's reading)
        assert src.info.rotation_deg % 360 == next(c.decode(video=0)).rotation % 360
    if not hflip:
        assert src.info.rotation_deg % 360 == rotation % 360
    assert src.info.mirrored == hflip
    frames = [f.image for f in src]
    assert len(frames) == 3 and frames[0].flags["C_CONTIGUOUS"]
    assert frames[0].shape == expected.shape
    assert np.abs(frames[0].astype(int) - expected).mean() < 4  # lossless luma; 4:2:0 chroma at block edges


def test_display_orientation_of_phone_matrix():
    """The matrix every portrait phone clip carries (ffprobe: "rotation of -90.00 degrees")."""
    o = display_orientation((0, 65536, 0, -65536, 0, 0, 0, 0, 1 << 30))
    assert o.rotation_deg == -90 and o.transpose and not o.mirrored
    img = np.arange(6).reshape(2, 3)
    np.testing.assert_array_equal(o.apply(img), np.rot90(img, -1))  # turned 90 degrees clockwise
    assert display_orientation(None).apply(img) is img
    assert display_orientation((0,) * 9).rotation_deg == 0


def test_remuxed_clip_frames_are_exact_quarter_turns(shared_data, tmp_path):
    """The original packets re-muxed with a -90 matrix decode to exactly the original frames turned clockwise."""
    src = shared_data / "samples/single_face.mp4"
    out_path = tmp_path / "remux.mp4"
    with av.open(str(src)) as inp, av.open(str(out_path), "w") as out:
        s = inp.streams.video[0]
        o = out.add_stream_from_template(s)
        o.set_display_rotation(-90)
        for packet in inp.demux(s):
            if packet.dts is not None:
                packet.stream = o
                out.mux(packet)
    a = VideoSource(src, end=0.5)
    b = VideoSource(out_path, end=0.5)
    assert (b.info.width, b.info.height, b.info.rotation_deg) == (360, 640, -90)
    pairs = list(zip(a, b, strict=True))
    assert len(pairs) > 10
    for fa, fb in pairs:
        assert fb.t_sec == pytest.approx(fa.t_sec)
        np.testing.assert_array_equal(fb.image, np.rot90(fa.image, -1))


@pytest.fixture(scope="module")
def phone_clips(shared_data, tmp_path_factory):
    """single_face.mp4 stored sideways with display rotation -90 (a portrait phone clip), and the same frames
    stored upright, both encoded the same way."""
    d = tmp_path_factory.mktemp("rot")
    frames = [f.image for f in VideoSource(shared_data / "samples/single_face.mp4")]
    _write(d / "upright.mp4", frames)
    _write(d / "phone.mp4", [np.rot90(im, 1) for im in frames], rotation=-90)  # stored turned CCW
    return d / "upright.mp4", d / "phone.mp4"


def test_phone_clip_is_analysed_upright(phone_clips):
    pytest.importorskip("mediapipe")
    import mien

    upright, phone = phone_clips
    with av.open(str(phone)) as c:  # really stored sideways, with the matrix
        s = c.streams.video[0]
        assert (s.codec_context.width, s.codec_context.height) == (360, 640)
        assert next(c.decode(s)).rotation == -90
    a, b = mien.analyze(upright), mien.analyze(phone)
    assert (b.meta["width"], b.meta["height"]) == (640, 360)
    assert (b.meta["rotation_deg"], a.meta["rotation_deg"], b.meta["mirrored"]) == (-90, 0, False)
    assert len(a) == len(b) == 72
    assert np.abs(b.roll_deg).max() < 15
    # same pixels up to the encoder: here 0.02 deg and 0.02 px mean (0.2 px max); stored sideways, roll is -94 deg
    assert np.abs(b.roll_deg - a.roll_deg).max() < 0.5
    assert np.abs(b.yaw_deg - a.yaw_deg).max() < 0.5 and np.abs(b.pitch_deg - a.pitch_deg).max() < 0.5
    err = np.linalg.norm(b.landmarks[..., :2] - a.landmarks[..., :2], axis=-1)
    assert err.mean() < 0.5 and err.max() < 2.0, (err.mean(), err.max())


def test_phone_clip_overlay_is_upright(phone_clips, tmp_path):
    pytest.importorskip("mediapipe")
    import mien
    from mien.viz.overlay import render_overlay

    _, phone = phone_clips
    res = mien.analyze(phone, end=0.3)
    out = tmp_path / "overlay.mp4"
    render_overlay(phone, res, out)
    with av.open(str(out)) as c:
        s = c.streams.video[0]
        assert (s.codec_context.width, s.codec_context.height) == (640, 360)
        assert next(c.decode(s)).rotation == 0  # written upright, no display matrix
