"""Frame sources: timestamps from presentation times, windows, strides, and bad input."""

import shutil

import av
import numpy as np
import pytest

from mien.errors import InputError
from mien.io.video import ImageSource, VideoSource, expand_inputs, open_source


def test_timestamps_are_presentation_times_vfr(shared_data):
    path = shared_data / "samples/noface_face.mov"  # variable frame rate (120 fps nominal, ~26 average)
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        expected = [float((f.pts - (s.start_time or 0)) * s.time_base) for f in c.decode(s)]
    frames = list(VideoSource(path))
    t = np.array([f.t_sec for f in frames])
    assert np.allclose(t, expected)
    assert [f.index for f in frames] == list(range(len(expected)))
    dt = np.diff(t)
    assert dt.min() > 0 and dt.max() / dt.min() > 1.5  # not index / fps


def test_every_start_end(shared_data):
    path = shared_data / "samples/single_face.mp4"
    all_frames = list(VideoSource(path))
    sub = list(VideoSource(path, start=0.5, end=1.5, every=3))
    assert all(f.index % 3 == 0 for f in sub)
    assert all(0.5 - 1e-9 <= f.t_sec <= 1.5 + 1e-9 for f in sub)
    full = [f for f in all_frames if 0.5 - 1e-9 <= f.t_sec <= 1.5 + 1e-9 and f.index % 3 == 0]
    assert [f.index for f in sub] == [f.index for f in full]
    assert sub[0].image.shape == (360, 640, 3) and sub[0].image.dtype == np.uint8


def test_fast_rgb_conversion_matches_swscale(shared_data):
    from mien.io.video import to_rgb

    with av.open(str(shared_data / "samples/single_face.mp4")) as c:
        frame = next(c.decode(video=0))
        assert frame.format.name == "yuv420p"
        fast = to_rgb(frame).astype(int)
        ref = frame.to_ndarray(format="rgb24").astype(int)
    assert fast.shape == ref.shape
    assert np.abs(fast - ref).mean() < 3.0


@pytest.mark.parametrize("kind", ["missing", "empty", "text", "truncated", "folder"])
def test_bad_video_inputs(tmp_path, shared_data, kind):
    p = tmp_path / "bad.mp4"
    if kind == "empty":
        p.write_bytes(b"")
    elif kind == "text":
        p.write_text("this is not a video\n" * 50)
    elif kind == "truncated":
        p.write_bytes((shared_data / "samples/single_face.mp4").read_bytes()[:3000])
    elif kind == "folder":
        p.mkdir()
    with pytest.raises(InputError) as ei:
        list(open_source(p))
    assert str(p) in str(ei.value) and "\n" not in str(ei.value)


def test_corrupt_packets_mid_stream_are_skipped(tmp_path, shared_data):
    src = shared_data / "samples/single_face.mp4"
    data = bytearray(src.read_bytes())
    rng = np.random.default_rng(0)
    mid = len(data) // 2
    data[mid:mid + 4000] = rng.integers(0, 256, 4000, dtype=np.uint8).tobytes()
    p = tmp_path / "corrupt.mp4"
    p.write_bytes(bytes(data))
    vs = VideoSource(p)
    frames = list(vs)  # must not raise
    assert len(frames) > 30
    assert np.all(np.diff([f.t_sec for f in frames]) > 0)


def test_image_source_and_bad_image(tmp_path, shared_data):
    src = ImageSource(shared_data / "samples/single_face.jpg")
    (frame,) = list(src)
    assert frame.image.shape == (562, 572, 3) and frame.t_sec == 0.0
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(InputError, match="not a readable image"):
        ImageSource(bad)


def test_expand_inputs(tmp_path, shared_data):
    for name in ("b.mp4", "a.jpg", "notes.txt"):
        shutil.copy(shared_data / "samples/single_face.jpg", tmp_path / name)
    assert expand_inputs([tmp_path]) == [str(tmp_path / "a.jpg"), str(tmp_path / "b.mp4")]
    assert expand_inputs([str(tmp_path / "*.jpg")]) == [str(tmp_path / "a.jpg")]
    assert expand_inputs([str(tmp_path / "*.none")]) == [str(tmp_path / "*.none")]  # reported later
    assert expand_inputs(["webcam:0"]) == ["webcam:0"]


def test_packet_timing_reads_each_file_version_once(tmp_path, monkeypatch, live_webm):
    """A header-less WebM's packets are read once however many passes open it; a rewritten or touched file is
    read again."""
    import os

    import mien.io.packets as packets

    reads = []
    read = packets._read_packet_timing
    monkeypatch.setattr(packets, "_read_packet_timing", lambda p: reads.append(p) or read(p))
    path = tmp_path / "rec.webm"
    live_webm(path, 30)
    fps, dur = packets.packet_timing(path)
    assert fps == pytest.approx(15, rel=0.01) and dur == pytest.approx(2.0, rel=0.01)
    monkeypatch.chdir(tmp_path)
    assert packets.packet_timing("rec.webm") == (fps, dur)  # the same file by another name
    assert open_source(path).info.duration_sec == dur  # the reader's pass too
    assert len(reads) == 1
    live_webm(path, 15)  # rewritten: read again
    assert packets.packet_timing(path)[1] == pytest.approx(1.0, rel=0.02) and len(reads) == 2
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched: read again
    assert packets.packet_timing(path)[1] == pytest.approx(1.0, rel=0.02) and len(reads) == 3
    assert packets.packet_timing(tmp_path / "missing.webm") == (None, None)
