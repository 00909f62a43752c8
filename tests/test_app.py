"""`mien app` without a browser: upload checks by content, the private temporary folder, cancellation, the
live session (frames pushed one by one, recording), the server's file lock-down and the command line."""

from __future__ import annotations

import re
import threading

import numpy as np
import pytest

from mien.app.files import AppFiles
from mien.app.safety import Limits, check_upload
from mien.errors import InputError

SAMPLE = "samples/single_face.mp4"
IMAGE = "samples/single_face.jpg"


@pytest.fixture
def files():
    f = AppFiles()
    yield f
    f.cleanup()
    assert not f.root.exists()


def _upload(files: AppFiles, src, name: str) -> str:
    """A file as Gradio stores an upload: inside the app's upload folder."""
    d = files.uploads / "abc123"
    d.mkdir(exist_ok=True)
    p = d / name
    p.write_bytes(src if isinstance(src, bytes) else src.read_bytes())
    return str(p)


def test_upload_checked_by_content_not_name(files, shared_data):
    job = files.job()
    bad = _upload(files, b"just text, not a video\n" * 10, "notes.mp4")
    with pytest.raises(InputError, match=r"^notes\.mp4: not a readable image or video \(checked by content"):
        check_upload(bad, files, job, Limits())
    m = check_upload(_upload(files, shared_data / IMAGE, "photo.mp4"), files, job, Limits())  # an image named .mp4
    assert m.kind == "image" and m.path.endswith("photo.jpg") and files.contains(m.path)
    v = check_upload(_upload(files, shared_data / SAMPLE, "clip.jpg"), files, job, Limits())  # a video named .jpg
    assert v.kind == "video" and v.path.endswith("clip.mp4") and 2.3 < v.duration_sec < 2.5
    assert v.width > 0 and v.height > 0
    with pytest.raises(InputError, match=r"^x\.png: an image; this needs a video$"):
        check_upload(_upload(files, shared_data / IMAGE, "x.png"), files, job, Limits(), kinds=("video",))


def test_upload_limits_and_paths_outside_the_app(files, shared_data, tmp_path):
    job = files.job()
    up = _upload(files, shared_data / SAMPLE, "clip.mp4")
    with pytest.raises(InputError, match=r"clip\.mp4: the video is 2 s long; the limit is 1 s"):
        check_upload(up, files, job, Limits(max_video_seconds=1))
    with pytest.raises(InputError, match="MB; the limit is"):
        check_upload(up, files, job, Limits(max_upload_mb=0.01))
    with pytest.raises(InputError, match="the limit of 1000 pixels"):
        check_upload(up, files, job, Limits(max_pixels=1000))
    # a path the browser might name (a real file outside the app's folder) is never read
    with pytest.raises(InputError, match="not a file uploaded to this app"):
        check_upload(str(shared_data / SAMPLE), files, job, Limits())
    link = files.uploads / "abc123" / "link.mp4"
    link.symlink_to(shared_data / SAMPLE)
    with pytest.raises(InputError, match="not a file uploaded to this app"):
        check_upload(str(link), files, job, Limits())
    with pytest.raises(InputError, match="no file was uploaded"):
        check_upload(None, files, job, Limits())


def test_analysis_can_be_cancelled_and_errors_are_one_line(files, shared_data):
    pytest.importorskip("gradio")
    import gradio as gr

    from mien.app.jobs import AppContext, Cancelled, user_errors
    from mien.app.tabs.analyze import run_analysis
    from mien.pipelines.analyze import AnalyzeOptions

    ctx = AppContext(files)
    stop = threading.Event()
    stop.set()
    with pytest.raises(Cancelled):
        run_analysis(ctx, _upload(files, shared_data / SAMPLE, "clip.mp4"), AnalyzeOptions(identity=False),
                     cancel=stop)

    @user_errors
    def bad():
        raise InputError("a<b>.mp4", "not a readable image or video\nsecond line")

    @user_errors
    def crash():
        raise RuntimeError("/secret/server/path exploded")

    with pytest.raises(gr.Error) as e:
        bad()
    assert e.value.message == "a&lt;b&gt;.mp4: not a readable image or video"  # one line, escaped
    with pytest.raises(gr.Error) as e:
        crash()
    assert "/secret" not in e.value.message and "RuntimeError" in e.value.message


def test_live_session_preview_and_recording(shared_data, tmp_path):
    import av

    import mien
    from mien.pipelines.live import KEEP_ROWS, LiveSession

    with av.open(str(shared_data / SAMPLE)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    s = LiveSession()
    for i, f in enumerate(frames[:40]):
        out = s.push(f, t_sec=i / 30)
        assert out.shape == f.shape and out.dtype == np.uint8
    assert not np.array_equal(out, frames[39])  # the face was drawn
    assert len(s._fa.rows["frame"]) <= KEEP_ROWS
    s.start_recording(tmp_path / "rec", fps=30)
    for i, f in enumerate(frames[40:], start=40):
        s.push(f, t_sec=i / 30)
    rec = s.stop_recording()
    n = len(frames) - 40
    assert rec.frames == n and len(rec.result) == n
    back = mien.read_results(rec.parquet)
    assert np.array_equal(back.frame, np.arange(n)) and np.isfinite(back.yaw_deg).all()
    assert abs(back.t_sec[0]) < 1e-6  # times restart at the recording
    with av.open(rec.video) as c:
        assert sum(1 for _ in c.decode(video=0)) == n
    assert s.stop_recording() is None
    s.close()


def _jpeg_url(image: np.ndarray, fmt: str = ".jpg") -> str:
    import base64

    import cv2

    ok, buf = cv2.imencode(fmt, image[:, :, ::-1])
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode()


def test_live_session_bars_late_frames_and_options(shared_data, tmp_path, monkeypatch):
    """AU + emotion heads on: their bars are drawn, a frame older than the last is skipped and counted, the rows
    kept between frames stay bounded (aligned with the heads' batches), options cannot change mid-recording
    and the recording's table has the AU and emotion columns."""
    import av

    import mien
    import mien.pipelines.live as live

    with av.open(str(shared_data / SAMPLE)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)][:36]
    monkeypatch.setattr(live, "KEEP_ROWS", 8)
    plain, s = live.LiveSession(), live.LiveSession(live.live_options(au=True, emotion=True))
    for i, f in enumerate(frames[:24]):
        out = s.push(f, t_sec=i / 30)
        assert len(s._fa.rows["frame"]) <= 8 and len(s._fa.rows["frame"]) == sum(
            len(next(iter(b.result().values()))) for b in s._fa._out) + len(s._fa._landmarks)
    ids, cols = s._fa.latest_heads()
    assert len(ids) == 1 and 0 <= cols["AU12"][0] <= 1 and abs(sum(cols[f"emotion_{e}"][0] for e in (
        "neutral", "happy", "sad", "angry", "fearful", "disgusted", "surprised")) - 1) < 1e-3
    ref = plain.push(frames[23], t_sec=0.0)
    done = []
    with plain.reserve(1.0):  # a frame announced (being decoded): a later one pushed meanwhile waits for it
        th = threading.Thread(target=lambda: done.append(plain.push(frames[1], t_sec=2.0)))
        th.start()
        th.join(0.3)
        assert th.is_alive() and not done
        assert plain.push(frames[0], t_sec=1.0) is not None
    th.join()
    assert done[0] is not None and plain.late == 0
    assert (np.abs(out.astype(int) - ref).sum(2) > 0).mean() > 0.02  # the bars' panel beside the box
    assert s.push(frames[0], t_sec=0.1) is None and s.late == 1  # late: skipped, counted
    with pytest.raises(ValueError, match="not a finite"):
        s.push(frames[0], t_sec=float("nan"))
    s.start_recording(tmp_path / "rec", fps=30)
    for i, f in enumerate(frames[24:], start=24):
        s.push(f, t_sec=i / 30)
    with pytest.raises(ValueError, match="stop the recording"):
        s.configure(live.live_options())
    rec = s.stop_recording()
    back = mien.read_results(rec.parquet)
    assert len(back) == 12 and np.array_equal(back.frame, np.arange(12))
    assert np.isfinite(back.extra["AU12"]).all() and np.isfinite(back.extra["emotion_happy"]).all()
    s.configure(live.live_options())  # after the recording: plain again
    assert s.push(frames[0], t_sec=5.0).shape == frames[0].shape and s._fa.heads == []
    s.close()
    plain.close()


def test_live_frames_checked_by_content_and_answered_in_one_line(files, shared_data):
    """The Live tab's server function: a frame is a JPEG data URL checked before decoding; anything else is a
    one-line error in the answer (never an exception, never a path read); a good frame comes back drawn."""
    pytest.importorskip("gradio")
    import base64

    import gradio as gr
    import PIL.Image

    from mien.app.jobs import AppContext
    from mien.app.live_page import decode_frame
    from mien.app.tabs import live

    img = np.asarray(PIL.Image.open(shared_data / IMAGE).convert("RGB"))
    good = _jpeg_url(img)
    assert np.abs(decode_frame(good, 10**8).astype(int) - img).mean() < 4
    png = _jpeg_url(img, ".png")  # a PNG behind a JPEG prefix
    for url, msg in (("/etc/passwd", "not a JPEG data URL"), (png, "not a JPEG image (checked by content)"),
                     ("data:image/jpeg;base64,@@@", "not valid base64"), (good, "px is larger than the limit of 100 pixels")):
        with pytest.raises(InputError, match=f"^webcam frame: .*{re.escape(msg)}$"):
            decode_frame(url, 100)
    ctx = AppContext(files)
    with gr.Blocks() as demo:
        live.build(ctx)
    view = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "live-view")
    assert view.live_frame({"image": png, "t": 0.0, "session": "s1"}) == {
        "error": "webcam frame: not a JPEG image (checked by content)"}
    assert "no session" in view.live_frame({"image": good, "t": 0.0, "session": "../x"})["error"]
    assert "no capture time" in view.live_frame({"image": good, "t": "now", "session": "s1"})["error"]
    assert "expected" in view.live_frame("/etc/passwd")["error"]
    r = view.live_frame({"image": good, "t": 1.0, "session": "s1"})
    assert r["image"].startswith("data:image/jpeg;base64,") and r["recording"] is False
    drawn = decode_frame(r["image"], 10**8)
    assert drawn.shape == img.shape and np.abs(drawn.astype(int) - img).mean() > 0.3  # the face was drawn
    assert view.live_frame({"image": good, "t": 0.5, "session": "s1"}) == {"late": True}
    base64.b64decode(r["image"].split(",", 1)[1], validate=True)
    for f in ctx.on_unload:
        f("s1")
    sessions = live.Sessions()  # a bounded number of sessions: a page cannot open landmarkers without end
    for i in range(live.MAX_SESSIONS):
        sessions.get(f"p{i}")
    with pytest.raises(ValueError, match="too many live sessions"):
        sessions.get("one-more")
    sessions._used["p0"] -= live.IDLE_SECONDS + 1  # an idle session makes room
    sessions.get("one-more")
    assert "p0" not in sessions._by_id
    for sid in list(sessions._by_id):
        sessions.close(sid)


def test_app_command_line(monkeypatch):
    from mien.cli.main import build_parser

    args = build_parser().parse_args(["app"])
    assert (args.host, args.port, args.models, args.datasets) == ("127.0.0.1", 7860, None, [])
    with pytest.raises(SystemExit):
        build_parser().parse_args(["app", "--share"])  # no share tunnel, not even as an option


def test_mien_app_serves_locally_and_removes_its_folder_on_exit(tmp_path):
    """`mien app` end to end: listens on 127.0.0.1, serves the page, Ctrl-C stops it and its folder is gone."""
    pytest.importorskip("gradio")
    import os
    import re
    import signal
    import socket
    import subprocess
    import sys
    import time
    import urllib.request
    from pathlib import Path

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src"), "TMPDIR": str(tmp_path)}
    # SIGINT back to its default in the child: a test runner started in the background by a non-interactive shell
    # has it ignored, and the app would inherit that and never stop on the signal below
    p = subprocess.Popen([sys.executable, "-m", "mien", "app", "--port", str(port)], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, env=env,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        line = p.stdout.readline()
        m = re.search(r"http://127\.0\.0\.1:(\d+).*results in (\S+),", line)
        assert m and int(m.group(1)) == port, line
        folder = Path(m.group(2))
        assert folder.is_dir() and folder.parent == tmp_path
        for _ in range(240):
            try:
                page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read().decode()
                break
            except OSError:
                time.sleep(0.5)
        assert "<title>mien</title>" in page or "mien" in page
        p.send_signal(signal.SIGINT)
        p.wait(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert not folder.exists()


def test_models_are_listed_by_family_and_tabs_refuse_bad_choices(shared_data, tiny_tokenizer_dir,
                                                                   tiny_reaction_export, tiny_reenact_export,
                                                                   tmp_path):
    """``--models`` holds several families: each tab lists only its own (by config.json's ``format``); a name
    not listed, a still portrait without an edit, and a bad upload are one-line errors before any work."""
    import shutil

    from mien.app.main import make_context
    from mien.app.tabs import reactions, reenact, tokens

    models = tmp_path / "models"
    shutil.copytree(tiny_tokenizer_dir, models / "tok")
    shutil.copytree(tiny_reaction_export, models / "rx")
    shutil.copytree(tiny_reenact_export[0], models / "re")
    (models / "broken").mkdir()
    (models / "broken" / "config.json").write_text("{not json")
    ctx = make_context(models=models)
    try:
        assert tokens.tokenizers(ctx.models) == {"tok": str(models / "tok")}
        assert reactions.reaction_models(ctx.models) == {"rx": str(models / "rx")}
        assert reenact.reenactors(ctx.models) == {"warp": "warp", "copy": "copy", "re": str(models / "re")}
        img = _upload(ctx.files, shared_data / IMAGE, "portrait.jpg")
        with pytest.raises(InputError, match=r"^tok: not one of the reaction models"):
            reactions.run_react(ctx, img, "tok", 2)
        with pytest.raises(InputError, match=r"^portrait\.jpg: an image; this needs a video$"):
            reactions.run_react(ctx, img, "rx", 2)
        with pytest.raises(InputError, match=r"^rx: not one of the reenactors"):
            reenact.run_reenact(ctx, img, None, "rx", {"AU12": 0.5})
        with pytest.raises(InputError, match=r"^portrait\.jpg: upload a driving video, or move an AU slider"):
            reenact.run_reenact(ctx, img, None, "warp", {"AU12": 0.0})
        with pytest.raises(ValueError, match="AU99"):
            reenact.run_reenact(ctx, img, None, "warp", {"AU99": 0.5})
    finally:
        ctx.files.cleanup()


def test_analyze_batch_skips_and_reports_a_bad_file(files, shared_data):
    """Several uploads are one batch through ``analyze_files``: the bad one (a text file named .png) is skipped and
    reported by its name, the images are analysed with progress file by file; Stop ends the batch."""
    pytest.importorskip("gradio")
    import mien
    from mien.app.jobs import AppContext, Cancelled
    from mien.app.tabs.analyze import run_batch
    from mien.pipelines.analyze import AnalyzeOptions

    ctx = AppContext(files)
    ups = [_upload(files, shared_data / IMAGE, "a.jpg"), _upload(files, b"not an image\n" * 9, "bad.png"),
           _upload(files, shared_data / "samples/multi_face.jpg", "b.jpg")]
    steps = []
    out = run_batch(ctx, ups, AnalyzeOptions(identity=False, max_faces=5), lambda f, desc: steps.append((f, desc)))
    assert out["skipped"] == ["bad.png: not a readable image or video (checked by content, not by name)"]
    assert (out["inputs"], out["analysed"]) == (3, 2)
    assert steps[:2] == [(0.45, "analysing a.jpg (1 of 2)"), (0.9, "analysing b.jpg (2 of 2)")]
    assert [f["name"] for f in out["per_file"]] == ["a.jpg", "b.jpg"] and out["per_file"][1]["faces"] == 5
    back = mien.read_results(out["files"][0])
    assert sorted(set(back.extra["video"].tolist())) == ["a", "b"] and len(back) == 1 + 5
    assert [p.rsplit("/", 1)[1] for p in out["overlays"]] == ["a.overlay.png", "b.overlay.png"]
    assert all(files.contains(p) for p in out["files"])
    with pytest.raises(InputError, match=r"^1 file\(s\): none can be analysed \(bad\.png: not a readable"):
        run_batch(ctx, [ups[1]], AnalyzeOptions())
    stop = threading.Event()
    stop.set()
    with pytest.raises(Cancelled):
        run_batch(ctx, ups, AnalyzeOptions(identity=False), cancel=stop)


def test_reenact_tab_progress_by_frame_and_stop(files, shared_data):
    """The Reenact tab's job moves the bar once per driving frame up to the end; Stop ends it without a file."""
    pytest.importorskip("gradio")
    from mien.app.jobs import AppContext, Cancelled
    from mien.app.tabs.reenact import run_reenact

    ctx = AppContext(files)
    img, drv = _upload(files, shared_data / IMAGE, "portrait.jpg"), _upload(files, shared_data / SAMPLE, "drv.mp4")
    seen = []
    rep = run_reenact(ctx, img, drv, "copy", {}, progress=lambda f, desc: seen.append(f))
    assert rep.frames == 72 and len(seen) == 1 + 72 and seen == sorted(seen) and seen[-1] == pytest.approx(1.0, 0.02)
    stop = threading.Event()

    def progress(f, desc):
        if f > 0.5:
            stop.set()

    with pytest.raises(Cancelled):
        run_reenact(ctx, img, drv, "copy", {}, progress=progress, cancel=stop)
    jobs = sorted((files.root / "jobs").iterdir(), key=lambda d: d.stat().st_mtime)
    assert not [p for p in jobs[-1].iterdir() if p.suffix == ".mp4" and p.name.startswith("reenact")]


def test_live_webm_without_duration_is_timed_from_its_packets(files, tmp_path, live_webm):
    """A browser's webcam recording is a live WebM whose header has no duration: the upload check and mien's
    video reader take its duration and frame rate from the packets, so the duration limit still applies."""
    import av

    from mien.io.packets import packet_timing
    from mien.io.video import open_source

    path = live_webm(tmp_path / "rec.webm", 30)
    with av.open(str(path)) as c:
        assert c.duration is None and c.streams.video[0].duration is None
    fps, dur = packet_timing(path)
    assert fps == pytest.approx(15, rel=0.01) and dur == pytest.approx(2.0, rel=0.01)
    up = _upload(files, path, "sample.webm")
    assert check_upload(up, files, files.job(), Limits()).duration_sec == pytest.approx(2.0, rel=0.01)
    with pytest.raises(InputError, match=r"sample\.webm: the video is 2 s long; the limit is 1 s"):
        check_upload(up, files, files.job(), Limits(max_video_seconds=1))
    assert open_source(path).info.duration_sec == pytest.approx(2.0, rel=0.01)


def test_reactions_tab_progress_through_its_steps_and_stop(files, shared_data, tiny_reaction_export, tmp_path):
    """The Reactions job's bar moves by frame through its steps (speaker analysis, then the rendered video) to
    the end; Stop during the speaker analysis ends it before any file is written."""
    pytest.importorskip("gradio")
    import shutil

    from mien.app.jobs import AppContext, Cancelled
    from mien.app.tabs.reactions import run_react

    shutil.copytree(tiny_reaction_export, tmp_path / "models" / "rx")
    ctx = AppContext(files, models=tmp_path / "models")
    clip = _upload(files, shared_data / SAMPLE, "speaker.mp4")
    seen = []
    out = run_react(ctx, clip, "rx", 2, videos=1, end=0.5, progress=lambda f, desc: seen.append((f, desc)))
    assert {"parquet", "plot", "video0"} <= set(out)
    values, descs = [f for f, _ in seen], [d for _, d in seen]
    assert values == sorted(values) and values[-1] > 0.9  # the last frame (at 0.44 s) starts 1/25 s before the end
    assert descs.count("reactions: speaker") == 16 and descs.count("reactions: video0") >= 10
    stop = threading.Event()

    def progress(f, desc):
        if f > 0.2:
            stop.set()

    with pytest.raises(Cancelled):
        run_react(ctx, clip, "rx", 2, videos=1, end=0.5, progress=progress, cancel=stop)
    last = max((files.root / "jobs").iterdir(), key=lambda d: d.stat().st_mtime)
    assert sorted(p.name for p in last.iterdir()) == ["speaker.mp4"]


def test_face3d_and_tokens_tabs_progress_by_frame_and_stop(files, shared_data, tiny_tokenizer_dir, tmp_path):
    """The 3-D tab's mesh and expression-transfer jobs and the Tokens tab's render move the bar by frame through
    their passes to the end; Stop ends each without an output file; face3d exports are listed for the transfer's
    neural renderer, and bad choices are one-line errors before any work."""
    pytest.importorskip("gradio")
    import json
    import shutil

    from mien.app.jobs import AppContext, Cancelled
    from mien.app.tabs import face3d, tokens

    models = tmp_path / "models"
    shutil.copytree(tiny_tokenizer_dir, models / "tok")
    (models / "f3d").mkdir()
    (models / "f3d" / "config.json").write_text(json.dumps({"format": "mien-face3d/1"}))
    (models / "f3d" / "model.safetensors").write_bytes(b"not weights")
    ctx = AppContext(files, models=models)
    assert face3d.encoders(ctx.models) == {"f3d": str(models / "f3d")} and list(tokens.tokenizers(ctx.models)) == ["tok"]
    clip, img = _upload(files, shared_data / SAMPLE, "source.mp4"), _upload(files, shared_data / IMAGE, "target.jpg")
    with pytest.raises(InputError, match=r"^tok: not one of the face3d exports"):
        face3d.run_transfer(ctx, clip, img, encoder="tok")
    with pytest.raises(InputError, match=r"^token swap: needs a neural renderer"):
        face3d.run_transfer(ctx, clip, img, swap=True)
    with pytest.raises(InputError, match=r"f3d: not a face3d encoder export"):
        face3d.run_transfer(ctx, clip, img, encoder="f3d")
    bad = _upload(files, b"just text, not a video\n" * 10, "face.mp4")
    with pytest.raises(InputError, match=r"^face\.mp4: not a readable video or image \(checked by content"):
        face3d.run_transfer(ctx, clip, bad)

    def stopper(stop):
        def progress(f, desc):
            if f > 0.5:
                stop.set()
        return progress

    def last_job():
        return max((files.root / "jobs").iterdir(), key=lambda d: d.stat().st_mtime)

    for name, job in (("transfer", lambda p, c=None: face3d.run_transfer(ctx, clip, img, end=0.3, progress=p,
                                                                         cancel=c)),
                      ("face3d", lambda p, c=None: face3d.run_face3d(ctx, clip, False, 0.3, 1, p, c)),
                      ("reconstruction", lambda p, c=None: tokens.run_render(ctx, clip, "tok", "reconstruction", 0,
                                                                            0.3, p, c))):
        seen = []
        rep = job(lambda f, desc, seen=seen: seen.append((f, desc)))
        values = [f for f, _ in seen]
        assert rep.frames == 10 and values == sorted(values) and values[-1] == pytest.approx(1.0), (name, seen)
        assert sum(d.endswith(": render") for _, d in seen) == 10, name  # one step per output frame
        stop = threading.Event()
        with pytest.raises(Cancelled):
            job(stopper(stop), stop)
        assert not [p.name for p in last_job().iterdir() if p.suffix == ".mp4" and not p.name.startswith("source")
                    or p.name == "mesh"], name


def test_batch_progress_is_named_by_each_input_position(files, shared_data, monkeypatch):
    """``analyze_files`` gives each frame's input position (a Step) with its progress: a middle upload that fails
    after producing frames (here its outputs cannot be written) does not shift the later files' names and shares
    of the bar (the tab used to infer the file from counters and counted such an input twice)."""
    pytest.importorskip("gradio")
    import mien.pipelines.batch as batch
    from mien.app.jobs import AppContext
    from mien.app.tabs.analyze import run_batch
    from mien.pipelines.analyze import AnalyzeOptions

    names = ["a.mp4", "b.mp4", "c.mp4", "d.mp4"]
    ups = [_upload(files, shared_data / SAMPLE, n) for n in names]
    write = batch.write_outputs

    def failing_write(result, source, outputs):
        if source.endswith("b.mp4"):
            assert len(result) > 0  # b produced frames (and faces) before failing
            raise InputError(source, "cannot write its outputs")
        write(result, source, outputs)

    monkeypatch.setattr(batch, "write_outputs", failing_write)
    seen = []
    out = run_batch(AppContext(files), ups, AnalyzeOptions(end=0.2, identity=False),
                    lambda f, desc: seen.append((f, desc)), overlay=False, plot=False)
    assert out["skipped"] == ["b.mp4: cannot write its outputs"] and out["analysed"] == 3
    seen = [(f, d) for f, d in seen if d.startswith("analysing")]
    assert list(dict.fromkeys(d for _, d in seen)) == [f"analysing {n} ({i + 1} of 4)" for i, n in enumerate(names)]
    for f, desc in seen:
        i = int(desc.split("(")[1].split()[0]) - 1
        assert 0.9 * i / 4 <= f <= 0.9 * (i + 1) / 4  # each file within its own quarter of the bar (0 … 0.9)
