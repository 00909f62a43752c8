"""``mien render reconstruction|swap``: side-by-side videos from an exported expression tokenizer."""

from __future__ import annotations

import av
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

from mien.cli.main import main as cli  # noqa: E402

pytestmark = pytest.mark.usefixtures("torch_one_thread")

VIDEO = "videos/talking/Input__00010.mp4"  # 224², 25 fps, one talking face


def _video_info(path):
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(s)]
        return len(frames), s.width, s.height, float(s.average_rate), frames


def _processed(path, **kw) -> int:
    from mien.io.video import VideoSource

    return sum(1 for _ in VideoSource(path, **kw))


def test_render_reconstruction_cli(tiny_tokenizer_dir, shared_data, tmp_path, capsys):
    video, out = shared_data / VIDEO, tmp_path / "out" / "rec.mp4"
    rc = cli(["render", "reconstruction", str(video), "--tokenizer", str(tiny_tokenizer_dir), "-o", str(out),
              "--end", "1.0"])
    assert rc == 0, capsys.readouterr().err
    n, w, h, fps, frames = _video_info(out)
    assert n == _processed(video, end=1.0) >= 20
    assert (w, h) == (2 * 64, 64) and fps == pytest.approx(25.0)
    left, right = frames[3][:, :64].astype(float), frames[3][:, 64:].astype(float)
    assert 30 < left.mean() < 230 and right.std() > 1  # a real face crop | a rendered image
    assert "reconstruction" in capsys.readouterr().out
    assert not list(out.parent.glob(".*tmp*"))


def test_render_swap_cli_and_bad_subject(tiny_tokenizer_dir, shared_data, tmp_path, capsys):
    import mien
    from mien.models.tokenizer import save_pretrained

    video, out = shared_data / VIDEO, tmp_path / "swap.mp4"
    rc = cli(["render", "swap", str(video), "--tokenizer", str(tiny_tokenizer_dir), "--target-subject", "3",
              "-o", str(out), "--end", "1.0", "--every", "2", "--size", "96"])
    assert rc == 0, capsys.readouterr().err
    n, w, h, fps, _ = _video_info(out)
    assert n == _processed(video, end=1.0, every=2) >= 10
    assert (w, h) == (2 * 96, 96) and fps == pytest.approx(12.5)
    assert "swap anchored at the subject embedding" in capsys.readouterr().out  # a conv tokenizer: no mesh anchors
    bad = tmp_path / "bad.mp4"
    with pytest.raises(SystemExit):
        cli(["render", "swap", str(video), "--tokenizer", str(tiny_tokenizer_dir), "--target-subject", "3",
             "--anchor", "mean", "-o", str(bad)])
    assert "invalid choice: 'mean'" in capsys.readouterr().err
    for target in ("16", "-1"):  # tiny has 16 subject embeddings
        assert cli(["render", "swap", str(video), "--tokenizer", str(tiny_tokenizer_dir), "--target-subject", target,
                    "-o", str(bad)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("mien: error: target subject") and "out of range" in err and err.count("\n") == 1
    inv = save_pretrained(mien.create_model("tokenizer-tiny", max_subjects=0), tmp_path / "inv")
    assert cli(["render", "swap", str(video), "--tokenizer", str(inv), "--target-subject", "0", "-o", str(bad)]) == 2
    assert "no subject embeddings" in capsys.readouterr().err
    assert not bad.exists() and not list(tmp_path.glob(".*tmp*"))


def test_render_same_as_extractor_and_no_face(tiny_tokenizer_dir, shared_data, tmp_path):
    """The panels are the training-style crop and the tokenizer's rendering of it (up to H.264 loss); a video
    without a face is a one-line InputError and writes nothing."""
    from mien.errors import InputError
    from mien.heads.tokens import TokenExtractor
    from mien.io.writer import VideoWriter
    from mien.pipelines.render import render_reconstruction
    from mien.pipelines.tokens import iter_face_crops

    ex = TokenExtractor(tiny_tokenizer_dir)
    out = tmp_path / "rec.mp4"
    rep = render_reconstruction(shared_data / VIDEO, ex, out, end=0.4, batch_size=3, crf=0)
    crops = [ff.crop for ff in iter_face_crops(shared_data / VIDEO, ex, end=0.4)]
    _, expected = ex.reconstruct(np.stack(crops))
    n, w, h, _, frames = _video_info(out)
    assert rep.frames == n == len(crops) and rep.faces == n and (rep.width, rep.height) == (w, h)

    def blocks(img):  # 4×4 block means: what yuv420p H.264 keeps of a random-init model's noisy output
        return img.astype(float).reshape(16, 4, 16, 4, 3).mean((1, 3))

    for got, crop, exp in zip(frames, crops, expected, strict=True):
        assert np.abs(blocks(got[:, :64]) - blocks(crop)).mean() < 3
        assert np.abs(blocks(got[:, 64:]) - blocks(exp)).mean() < 3
        assert np.abs(blocks(got[:, 64:]) - blocks(crop)).mean() > 5  # not a copy of the input

    blank = tmp_path / "blank.mp4"
    with VideoWriter(blank, 10) as wr:
        for _ in range(5):
            wr.write(np.full((64, 64, 3), 90, np.uint8))
    with pytest.raises(InputError, match="no face"):
        render_reconstruction(blank, ex, tmp_path / "none.mp4")
    assert not (tmp_path / "none.mp4").exists()


def test_render_frame_alignment_with_gaps(tiny_tokenizer_dir, shared_data, tmp_path, monkeypatch):
    """Each output frame pairs its own crop with its own rendering across batch boundaries; frames without a
    face keep the frame count (left: last box, right: black)."""
    from mien.heads.tokens import TokenExtractor
    from mien.io.video import VideoSource
    from mien.io.writer import VideoWriter
    from mien.pipelines.render import render_video

    real = [fr.image for fr in VideoSource(shared_data / VIDEO, end=0.6)]
    gap = tmp_path / "gap.mp4"
    with VideoWriter(gap, 25, crf=12) as wr:
        for im in real[:6] + [np.full_like(real[0], 128)] * 4 + real[6:12]:
            wr.write(im)
    ex = TokenExtractor(tiny_tokenizer_dir)
    # stand-in renderer: the negative of the input crop, so a frame/batch mix-up would show
    monkeypatch.setattr(ex, "reconstruct", lambda crops, target=None, anchor="neutral": (None, 255 - crops))
    out = tmp_path / "gap.out.mp4"
    rep = render_video(gap, ex, out, batch_size=4, crf=0)
    n, _, _, _, frames = _video_info(out)
    assert n == rep.frames == 16 and 10 <= rep.faces <= 12, rep
    for k, f in enumerate(frames):
        left, right = f[:, :64].astype(float), f[:, 64:].astype(float)
        if 6 <= k < 10 and right.mean() < 3:  # no face: black rendering, crop of the last face (grey frame;
            inside = left[left.mean(-1) > 30]  # the aligned crop reaches past this 224² frame: black there)
            assert len(inside) > 0.5 * 64 * 64 and abs(inside.mean() - 128) < 4
        else:
            assert np.abs((255 - left) - right).mean() < 4
    assert sum(f[:, 64:].mean() < 3 for f in frames) == 16 - rep.faces


def test_render_with_saved_analysis(tiny_tokenizer_dir, shared_data, tmp_path, analyzed, capsys):
    """``--analysis`` reuses a ``mien analyze`` Parquet file (no second MediaPipe pass); a results file of
    another video size is refused."""
    video = shared_data / VIDEO
    res = analyzed(VIDEO, end=1.0)
    res.to_parquet(tmp_path / "a.parquet")
    out = tmp_path / "rec.mp4"
    assert cli(["render", "reconstruction", str(video), "--tokenizer", str(tiny_tokenizer_dir), "-o", str(out),
                "--end", "1.0", "--analysis", str(tmp_path / "a.parquet")]) == 0
    n, w, h, _, _ = _video_info(out)
    assert n == _processed(video, end=1.0) and (w, h) == (128, 64)
    assert f"({len(set(res.frame.tolist()))} with a face)" in capsys.readouterr().out
    other = analyzed("videos/talking/face_5.mp4", end=0.2)
    other.to_parquet(tmp_path / "b.parquet")
    assert cli(["tokens", "plot", str(video), "--tokenizer", str(tiny_tokenizer_dir), "-o", str(tmp_path / "p.png"),
                "--analysis", str(tmp_path / "b.parquet")]) == 2
    assert "analysis of a 524x524 source" in capsys.readouterr().err
