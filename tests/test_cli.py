"""The ``mien`` command: outputs, exit codes and one-line errors for bad input, batches, resume, demo."""

import json
import subprocess
import sys

import av
import pytest

import mien


def run_mien(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "mien", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


def _one_line_error(proc, path):
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert lines[0].startswith("mien: error: ") and str(path) in lines[0]
    return lines[0]


def test_missing_file(tmp_path):
    p = tmp_path / "missing.mp4"
    line = _one_line_error(run_mien("analyze", p, "-o", tmp_path / "out"), p)
    assert "no such file" in line


def test_empty_and_non_video_files(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    assert "empty" in _one_line_error(run_mien("analyze", empty, "-o", tmp_path / "o"), empty)
    text = tmp_path / "notes.mov"
    text.write_text("hello\n" * 100)
    assert "not a readable video" in _one_line_error(run_mien("analyze", text, "-o", tmp_path / "o"), text)


def test_truncated_file(tmp_path, shared_data):
    p = tmp_path / "trunc.mp4"
    p.write_bytes((shared_data / "samples/single_face.mp4").read_bytes()[:2000])
    _one_line_error(run_mien("analyze", p, "-o", tmp_path / "o"), p)


def test_usage_error_exit_code(tmp_path):
    proc = run_mien("analyze", "-o", tmp_path)
    assert proc.returncode == 2 and "no input" in proc.stderr


def test_batch_with_a_corrupt_file_completes_the_others_and_resumes(tmp_path, shared_data):
    good1 = shared_data / "samples/single_face.mp4"
    good2 = shared_data / "samples/multi_face.jpg"
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 500)
    out = tmp_path / "out"
    proc = run_mien("analyze", good1, bad, good2, "-o", out, "--format", "parquet,openface")
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "broken.mp4" in proc.stderr
    report = json.loads((out / "report.json").read_text())
    assert [f["input"] for f in report["failed"]] == [str(bad)]
    assert len(report["ok"]) == 2
    res = mien.read_results(out / "video=single_face" / "part-0.parquet")
    assert len(res) == 72
    assert mien.read_openface(out / "single_face.openface.csv").frame.tolist() == res.frame.tolist()
    with av.open(str(out / "single_face.overlay.mp4")) as c:
        s = c.streams.video[0]
        assert (s.width, s.height) == (640, 360)
        assert sum(1 for _ in c.decode(s)) == 72
    assert (out / "single_face.plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "multi_face.overlay.png").exists()
    assert "analyzed 2 input(s)" in proc.stdout
    assert not list(out.rglob(".*tmp*"))  # no temporary files left behind
    assert len(mien.read_results_dataset(out)) == len(res) + len(mien.read_results(out / "video=multi_face/part-0.parquet"))
    # resume: the same command skips what is done and does not rewrite it
    mtime = (out / "video=single_face" / "part-0.parquet").stat().st_mtime_ns
    proc = run_mien("analyze", good1, bad, good2, "-o", out, "--format", "parquet,openface")
    assert proc.returncode == 1 and "2 already done" in proc.stdout
    assert (out / "video=single_face" / "part-0.parquet").stat().st_mtime_ns == mtime


def test_csv_format_and_no_overlay(tmp_path, shared_data):
    out = tmp_path / "o"
    proc = run_mien("analyze", shared_data / "samples/single_face.jpg", "-o", out, "--format", "csv",
                    "--no-overlay", "--no-plot")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["_manifest.json", "report.json", "single_face.csv"]


def test_demo(tmp_path):
    proc = run_mien("demo", "-o", tmp_path / "demo")
    assert proc.returncode == 0, proc.stderr
    res = mien.read_results(tmp_path / "demo" / "video=sample_wolfgang_langer_pexels" / "part-0.parquet")
    assert len(res) == 472
    assert "overlay" in proc.stdout and str(tmp_path / "demo") in proc.stdout


def test_version():
    proc = run_mien("--version")
    assert proc.returncode == 0 and mien.__version__ in proc.stdout


def test_convert_faceapi_bad_package(tmp_path):
    proc = run_mien("models", "convert-faceapi", tmp_path / "nope", tmp_path / "out")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("mien: error: ") and "nope" in proc.stderr


def test_webcam_source_runs_live_and_writes_results(tmp_path, shared_data, monkeypatch):
    """`--source webcam:0` with OpenCV's capture pointed at a real clip: frames processed live until it ends."""
    import cv2

    from mien.cli.main import main

    real_capture = cv2.VideoCapture
    opened = []

    def fake_capture(index):
        opened.append(index)
        return real_capture(str(shared_data / "samples/single_face.mp4"))

    monkeypatch.setattr(cv2, "VideoCapture", fake_capture)
    monkeypatch.delenv("DISPLAY", raising=False)
    out = tmp_path / "live"
    assert main(["analyze", "--source", "webcam:0", "-o", str(out), "--no-progress"]) == 0
    assert opened == [0]
    res = mien.read_results(out / "video=webcam0" / "part-0.parquet")
    assert res.meta["source_kind"] == "webcam"
    assert len(res) >= 70 and (res.face_id == 0).all()
    assert (out / "webcam0.plot.png").exists()


def test_webcam_preview_shows_reconstruction_with_tokenizer(tmp_path, shared_data, monkeypatch,
                                                             tiny_tokenizer_dir, torch_one_thread):
    """With a display and --tokenizer, each preview frame is the camera image plus a reconstruction panel."""
    import cv2

    from mien.cli.main import main

    real_capture = cv2.VideoCapture
    monkeypatch.setattr(cv2, "VideoCapture", lambda i: real_capture(str(shared_data / "samples/single_face.mp4")))
    shown = []
    monkeypatch.setattr(cv2, "imshow", lambda name, img: shown.append(img.copy()))
    keys = iter([-1] * 9 + [ord("q")])  # the user presses q on the 10th frame
    monkeypatch.setattr(cv2, "waitKey", lambda ms: next(keys))
    monkeypatch.setattr(cv2, "destroyAllWindows", lambda: None)
    monkeypatch.setenv("DISPLAY", ":99")
    out = tmp_path / "live"
    assert main(["analyze", "--source", "webcam:0", "-o", str(out), "--tokenizer", str(tiny_tokenizer_dir),
                 "--no-progress"]) == 0
    assert len(shown) == 10  # stopped by q
    assert shown[0].shape == (360, 640 + 360, 3)
    assert shown[-1][:, 640:].mean() > 5  # the reconstruction panel is not empty
    res = mien.read_results(out / "video=webcam0" / "part-0.parquet")
    assert len(res) == 10 and res.extra["expression_token"].shape == (10, 32)


def test_neural_options_without_torch_fail_cleanly(tmp_path, shared_data, monkeypatch):
    """Without PyTorch (core install), --emotion is a one-line usage error, not a traceback."""
    import mien.heads.base as B

    monkeypatch.setattr(B, "torch_available", lambda: False)
    with pytest.raises(ValueError, match="needs PyTorch"):
        mien.analyze(shared_data / "samples/single_face.jpg", emotion=True)
    res = mien.analyze(shared_data / "samples/single_face.jpg")  # the default needs no torch
    assert len(res) == 1 and "identity" not in res.meta
