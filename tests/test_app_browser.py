"""`mien app` in a real browser: Debian's headless Chromium driven by Playwright (no Playwright browser
download), against the app served in this process on a free port.

Every tab runs on real sample footage (redistributable files only, so the screenshots may be published:
``MIEN_APP_SCREENSHOTS=docs/media`` writes them there as ``app-<tab>.png``; otherwise they go to the test's
temporary folder as artefacts). Chromium, Gradio or Playwright missing: skipped, but a failure under
``MIEN_REQUIRE_SHARED_DATA=1`` (CI), whose ``.ci/run`` installs Chromium.
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import time
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = os.environ.get("MIEN_CHROMIUM", "/usr/bin/chromium")
SAMPLE = "samples/single_face.mp4"  # 2.4 s, 72 frames, one face (redistributable)
WOLF = "samples/WolfgangLanger_Pexels.mp4"  # 640×360, one face (redistributable, Pexels)
IMAGE = "samples/single_face.jpg"
TIMEOUT_MS = 120_000


def _require(what: str, ok: bool) -> None:
    if ok:
        return
    msg = f"browser tests need {what}"
    if os.environ.get("MIEN_REQUIRE_SHARED_DATA") == "1":
        pytest.fail(msg + " (CI: .ci/run installs Chromium; the dev extra installs gradio and playwright)")
    pytest.skip(msg)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _y4m(src: Path, dst: Path, frames: int = 48, size=(640, 480)) -> Path:
    """The first ``frames`` frames of ``src`` letterboxed into ``size`` as a Y4M file (Chromium's fake camera)."""
    import av

    w, h = size
    with av.open(str(src)) as inp, av.open(str(dst), "w", format="yuv4mpegpipe") as out:
        st = out.add_stream("rawvideo", rate=24)
        st.width, st.height, st.pix_fmt = w, h, "yuv420p"
        for i, fr in enumerate(inp.decode(video=0)):
            img = fr.to_ndarray(format="rgb24")
            scale = min(w / img.shape[1], h / img.shape[0])
            img = fr.reformat(width=round(img.shape[1] * scale) // 2 * 2, height=round(img.shape[0] * scale) // 2 * 2,
                              format="rgb24").to_ndarray()
            canvas = np.zeros((h, w, 3), np.uint8)
            y0, x0 = (h - img.shape[0]) // 2, (w - img.shape[1]) // 2
            canvas[y0:y0 + img.shape[0], x0:x0 + img.shape[1]] = img
            for p in st.encode(av.VideoFrame.from_ndarray(canvas, format="rgb24")):
                out.mux(p)
            if i + 1 >= frames:
                break
        for p in st.encode():
            out.mux(p)
    return dst


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    d = os.environ.get("MIEN_APP_SCREENSHOTS")
    out = Path(d) if d else tmp_path_factory.mktemp("app-screenshots")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _screenshot(page, shots: Path, tab: str) -> Path:
    """A small palette PNG of the page (docs/media/app-<tab>.png when MIEN_APP_SCREENSHOTS=docs/media)."""
    import PIL.Image

    img = PIL.Image.open(io.BytesIO(page.screenshot(full_page=True))).convert("RGB")
    img.thumbnail((960, 1600), PIL.Image.Resampling.LANCZOS)
    path = shots / f"app-{tab}.png"
    img.quantize(colors=128, method=PIL.Image.Quantize.MEDIANCUT).save(path, optimize=True)
    return path


@pytest.fixture(scope="module")
def app(shared_data, tiny_tokenizer_dir, tiny_reaction_export, tmp_path_factory):
    """The app on a free port with the tiny tokenizer and reaction model in --models and a dataset prepared from
    the sample."""
    _require("gradio (the app extra)", _has("gradio"))
    from mien.app.main import make_context, serve
    from mien.pipelines.prepare import PrepareOptions, prepare

    tmp = tmp_path_factory.mktemp("app")
    ds = tmp / "single_face_ds"
    rep = prepare([str(shared_data / SAMPLE)], str(ds),
                  PrepareOptions(clip_seconds=1.0, fps=25.0, crop_size=64, clips_per_video=2, shard_samples=2))
    assert rep.samples == 2 and not rep.failed
    models = tmp / "models"
    shutil.copytree(tiny_tokenizer_dir, models / "tiny")
    shutil.copytree(tiny_reaction_export, models / "tiny-reaction")
    ctx = make_context(models=models, datasets=[str(ds)])
    port = _free_port()
    demo = serve(ctx, "127.0.0.1", port, block=False, quiet=True)
    yield {"url": f"http://127.0.0.1:{port}/", "ctx": ctx, "tmp": tmp}
    demo.close()
    ctx.files.cleanup()
    assert not ctx.files.root.exists()


def test_request_bodies_over_the_limit_are_refused(app):
    """Gradio's JSON routes read any body they get: the app caps them (mien.app.safety.BodyLimit), by Content-Length
    (refused from the headers alone) and by counting a body sent without one; small requests still work."""
    import http.client
    from urllib.parse import urlparse

    from mien.app.safety import MAX_BODY_BYTES

    u = urlparse(app["url"])
    route = "/gradio_api/component_server/"

    def request(headers, body=None):
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        try:
            conn.putrequest("POST", route)
            for k, v in headers.items():
                conn.putheader(k, v)
            conn.endheaders()
            if body is not None:
                for chunk in body:
                    conn.send(chunk)
            return conn.getresponse().status
        except (ConnectionError, http.client.HTTPException):
            return None  # the server dropped the connection
        finally:
            conn.close()

    json = {"Content-Type": "application/json"}
    # announced too big: answered 413 before any body is sent
    assert request({**json, "Content-Length": str(MAX_BODY_BYTES + 1)}) == 413
    # sent without a length (chunked) and over the limit: never a normal answer
    piece = b" " * (1 << 20)
    n = MAX_BODY_BYTES // len(piece) + 2
    chunked = (b"%x\r\n%s\r\n" % (len(piece), piece) for _ in range(n))
    assert request({**json, "Transfer-Encoding": "chunked"}, [*chunked, b"0\r\n\r\n"]) != 200
    # a small body reaches the route (it answers, whatever it says about an empty request)
    assert request({**json, "Content-Length": "2"}, [b"{}"]) not in (413, None)


def _has(mod: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(mod) is not None


@pytest.fixture(scope="module")
def browser(app, shared_data):
    _require("playwright (pip install playwright)", _has("playwright"))
    _require(f"Chromium at {CHROMIUM} (apt-get install chromium)", shutil.which(CHROMIUM) is not None)
    from playwright.sync_api import sync_playwright

    clip = _y4m(shared_data / WOLF, app["tmp"] / "clip.y4m")
    profile = app["tmp"] / "chromium-profile"
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-video-capture={clip}"]
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(str(profile), executable_path=CHROMIUM, headless=True, args=args,
                                                   viewport={"width": 1280, "height": 900},
                                                   permissions=["camera"])
        ctx.set_default_timeout(TIMEOUT_MS)
        yield ctx
        ctx.close()


@pytest.fixture
def page(browser, app):
    pg = browser.new_page()
    pg.goto(app["url"])
    pg.wait_for_selector("#analyze-run")
    yield pg
    pg.close()


def _reload(page) -> None:
    """A fresh page (the same browser session ends with the old one)."""
    page.reload()
    page.wait_for_selector("#analyze-run")


def _tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def _upload(page, elem: str, path: Path) -> None:
    """Choose ``path`` in the hidden ``<input type=file>`` of ``#elem`` and wait for the component's value: the
    file listed with a link to the copy the server stored (``<a download=NAME href=…/gradio_api/file=…>``),
    which exists only once the upload request has returned.

    Not the name in the visible text: Gradio shows the full name only while the upload is in progress (the
    listed file splits it into stem and suffix elements, which ``innerText`` joins with a line break), so a wait
    for the text saw it only when it polled inside that window: a 10 ms upload was missed and the test waited
    for an upload that had long finished.
    """
    page.locator(f"#{elem} input[type=file]").set_input_files(str(path))
    page.locator(f'#{elem} a[download="{path.name}"][href*="/gradio_api/file="]').first.wait_for(state="attached")


def _video(page, elem: str) -> dict:
    """Load and play the <video> in ``#elem``: its source, duration (s), time reached (s) and error code."""
    page.wait_for_selector(f"#{elem} video[src]")
    return page.evaluate("""async (sel) => {
        const v = document.querySelector(sel);
        if (v.readyState < 1) await new Promise((ok) => {
            v.addEventListener('loadedmetadata', ok, {once: true});
            v.addEventListener('error', ok, {once: true});
            setTimeout(ok, 20000); });
        v.muted = true;
        let played = true;
        try { await v.play(); } catch (e) { played = String(e); }
        await new Promise((ok) => setTimeout(ok, 700));
        v.pause();
        return {src: v.currentSrc, duration: v.duration, time: v.currentTime, played,
                error: v.error ? v.error.code : null};
    }""", f"#{elem} video")


def _download(page, elem: str, suffix: str, dst: Path) -> Path:
    """Fetch the link ending in ``suffix`` from the file list ``#elem`` (as the browser's download would)."""
    links = page.locator(f"#{elem} a[href]")
    links.first.wait_for()
    hrefs = [links.nth(i).get_attribute("href") for i in range(links.count())]
    href = next(h for h in hrefs if h.split("?")[0].endswith(suffix))
    resp = page.request.get(href if "://" in href else page.url.rstrip("/") + "/" + href.lstrip("/"))
    assert resp.ok, (href, resp.status)
    dst.write_bytes(resp.body())
    return dst


def test_analyze_tab(page, app, shared_data, shots, tmp_path):
    import mien

    _upload(page, "analyze-upload", shared_data / SAMPLE)
    page.click("#analyze-run")
    page.wait_for_selector("#table-caption", timeout=TIMEOUT_MS)
    assert page.inner_text("#table-caption").startswith("72 rows")
    assert page.locator("#analyze-table tbody tr").count() == 72
    v = _video(page, "analyze-overlay")
    assert v["error"] is None and v["duration"] > 0 and v["played"] is True and v["time"] > 0, v
    assert "/gradio_api/file=" in v["src"] and str(app["ctx"].files.root) in v["src"]  # served from the app's folder
    res = mien.read_results(_download(page, "analyze-files", ".parquet", tmp_path / "out.parquet"))
    assert len(res) == 72 and res.landmarks.shape == (72, 478, 3)
    page.wait_for_selector("#analyze-plot img[src]")
    _screenshot(page, shots, "analyze")


def test_bad_upload_shows_one_line_error_and_app_keeps_serving(page, shared_data, tmp_path):
    bad = tmp_path / "notes.mp4"
    bad.write_text("this is a text file, not a video\n" * 20)
    _upload(page, "analyze-upload", bad)
    page.click("#analyze-run")
    err = page.get_by_text("notes.mp4: not a readable image or video (checked by content, not by name)")
    err.first.wait_for()
    assert "Traceback" not in page.content()
    _reload(page)
    _upload(page, "analyze-upload", shared_data / IMAGE)  # still serving: a good image goes through
    page.click("#analyze-run")
    page.wait_for_selector("#table-caption")
    assert page.inner_text("#table-caption").startswith("1 rows")
    page.wait_for_selector("#analyze-overlay-image img[src]")


def test_progress_and_stop(page, app, shared_data):
    """A long analysis shows its progress bar; Stop ends it at the next frame (it writes no outputs) and frees
    the queue for the next job."""
    _upload(page, "analyze-upload", shared_data / WOLF)  # 19.7 s of video
    page.click("#analyze-run")
    page.get_by_text("analysing").first.wait_for()
    page.click("#analyze-stop")
    for _ in range(600):  # the Stop request reached the server before the page goes away
        if any(ev.is_set() for ev in app["ctx"]._cancel.values()):
            break
        page.wait_for_timeout(100)
    _reload(page)
    _upload(page, "analyze-upload", shared_data / IMAGE)
    page.click("#analyze-run")
    page.wait_for_selector("#table-caption")
    assert page.inner_text("#table-caption").startswith("1 rows")
    jobs = [d for d in (app["ctx"].files.root / "jobs").iterdir() if (d / "WolfgangLanger_Pexels.mp4").exists()
            and d.name.startswith("analyze")]
    assert len(jobs) == 1 and not list(jobs[0].glob("*.parquet")), jobs  # stopped before writing anything


def _live_start(page) -> None:
    """Open the Live tab, start the (fake) camera and wait for the first overlay frame in the page."""
    _tab(page, "Live")
    page.locator("#live-view button.mien-live-start").click()
    page.wait_for_selector('#live-view img.mien-live-out[src^="data:image/jpeg"]')


def _live_rate(page, seconds: float) -> tuple[int, float]:
    """Overlay frames shown in the page during ``seconds`` and their rate (frames/s)."""
    a, t0 = page.evaluate("window.mienLive.shown"), time.perf_counter()
    page.wait_for_timeout(seconds * 1000)
    n = page.evaluate("window.mienLive.shown") - a
    return n, n / (time.perf_counter() - t0)


def _live_record(page, tmp_path: Path, seconds: float = 1.5):
    """Record ``seconds`` of the stream, stop and save; the Parquet as read by ``mien.read_results``."""
    from playwright.sync_api import expect

    import mien

    page.click("#live-record")
    page.locator("#live-status").get_by_text("Recording").wait_for()
    for box in ("#live-au input", "#live-emotion input"):  # the bar options are locked while recording
        expect(page.locator(box)).to_be_disabled()
    page.wait_for_timeout(seconds * 1000)
    page.click("#live-save")
    page.locator("#live-status").get_by_text("Saved").wait_for()
    for box in ("#live-au input", "#live-emotion input"):
        expect(page.locator(box)).to_be_enabled()
    return mien.read_results(_download(page, "live-files", ".parquet", tmp_path / "live.parquet"))


def test_live_tab_streams_overlay_frames_and_records(page, tmp_path):
    _live_start(page)
    n, fps = _live_rate(page, 3.0)
    print(f"\nLive tab: {n} overlay frames in the page in 3 s = {fps:.1f} frames/s (fake camera 24 fps, 640x480, "
          f"load {os.getloadavg()[0]:.1f})")
    assert n >= 3  # frames keep arriving
    size = page.evaluate("(() => { const i = document.querySelector('#live-view img.mien-live-out');"
                         " return [i.naturalWidth, i.naturalHeight]; })()")
    assert size == [640, 480], size
    # the route the page's frames take answers a bad frame (here a path) with one line, and the stream goes on
    comp = page.evaluate("window.gradio_config.components.find((c) => c.props.elem_id === 'live-view').id")
    sid = page.evaluate("window.__gradio_session_hash__")
    resp = page.request.post(page.url.rstrip("/") + "/gradio_api/component_server/", data={
        "data": {"image": "/etc/passwd", "t": 1e9, "session": sid}, "component_id": comp, "fn_name": "live_frame",
        "session_hash": sid})
    assert resp.ok and resp.json() == {"error": "webcam frame: not a JPEG data URL"}, resp.text()
    assert page.evaluate("window.mienLive.errors") == 0, page.inner_text("#live-view .mien-live-line")
    res = _live_record(page, tmp_path)
    assert len(res) > 0 and np.isfinite(res.yaw_deg).all() and np.all(np.diff(res.t_sec) >= 0)


def test_live_tab_au_and_emotion_bars(page, shots, tmp_path):
    """With the AU and emotion bars ticked, overlay frames still arrive and the recording has their columns."""
    _tab(page, "Live")
    page.locator("#live-au input").check()
    page.locator("#live-emotion input").check()
    page.locator("#live-status").get_by_text("Bars: AU, emotion").wait_for()
    _live_start(page)
    n, fps = _live_rate(page, 2.0)
    print(f"\nLive tab with AU + emotion bars: {n} overlay frames in 2 s = {fps:.1f} frames/s "
          f"(load {os.getloadavg()[0]:.1f})")
    assert n >= 2 and page.evaluate("window.mienLive.errors") == 0
    res = _live_record(page, tmp_path, 1.0)
    assert len(res) > 0 and np.isfinite(res.extra["AU12"]).all() and np.isfinite(res.extra["emotion_happy"]).all()
    _screenshot(page, shots, "live")


def _render_tab(page, tab: str, prefix: str, video: Path, done_text: str) -> None:
    """Upload ``video`` in a render tab, run it, wait for ``done_text`` in its summary; the result video plays."""
    _tab(page, tab)
    _upload(page, f"{prefix}-upload", video)
    page.click(f"#{prefix}-run")
    page.locator(f"#{prefix}-summary").get_by_text(done_text).wait_for()
    v = _video(page, f"{prefix}-video")
    assert v["error"] is None and v["duration"] > 0, v


def test_tokens_tab_renders_reconstruction(page, shared_data, shots):
    _render_tab(page, "Tokens", "tokens", shared_data / SAMPLE, "reconstruction: 72 frames")
    _screenshot(page, shots, "tokens")


def test_face3d_tab_renders_mesh(page, shared_data, shots, tmp_path):
    _render_tab(page, "3-D", "face3d", shared_data / SAMPLE, "72 frames (72 faces)")
    mesh = np.load(_download(page, "face3d-files", ".npz", tmp_path / "mesh.npz"))
    assert mesh["vertices"].shape[0] == 72


def test_face3d_tab_expression_transfer(page, shared_data, shots, tmp_path):
    """The 3-D tab's Expression transfer: the sample's expressions on the Pexels clip's face (its first 0.5 s);
    the progress bar moves by frame through the source's and the target's analysis and the rendering; the video
    plays and downloads with every frame (the tab's screenshot: the transfer is its more telling view)."""
    import av

    _tab(page, "3-D")
    page.get_by_role("tab", name="Expression transfer").click()
    _upload(page, "transfer-source", shared_data / SAMPLE)
    _upload(page, "transfer-target", shared_data / WOLF)
    page.locator("#transfer-end input").fill("0.5")
    page.click("#transfer-run")
    summary = page.locator("#face3d-summary")
    seen = _progress_values(page, "face3d-video", lambda: "transferred" in summary.inner_text())
    assert "expression transfer: 16 frames (16 transferred)" in summary.inner_text(), summary.inner_text()
    moving = sorted({v for v in seen if v > 5})
    # by frame through the passes (source, target, rendering: a third each); the unit test sees it end at 100 %
    assert len(moving) >= 3 and moving[-1] >= 66, seen
    v = _video(page, "face3d-video")
    assert v["error"] is None and v["duration"] > 0, v
    with av.open(str(_download(page, "face3d-files", ".mp4", tmp_path / "transfer.mp4"))) as c:
        assert sum(1 for _ in c.decode(video=0)) == 16
    _screenshot(page, shots, "3d")


def test_reenact_tab_animates_a_portrait(page, shared_data, shots):
    """Source portrait + driving video → the default warp reenactor, side by side (source | driving | output)."""
    _tab(page, "Reenact")
    _upload(page, "reenact-source", shared_data / IMAGE)
    _upload(page, "reenact-driving", shared_data / SAMPLE)
    page.locator("#reenact-side input[type=checkbox]").check()
    page.click("#reenact-run")
    page.locator("#reenact-summary").get_by_text("warp: 72 frame(s)").wait_for()
    v = _video(page, "reenact-video")
    assert v["error"] is None and v["duration"] > 0, v
    assert page.locator("#reenact-files a[href]").first.get_attribute("href").split("?")[0].endswith(".mp4")
    _screenshot(page, shots, "reenact")


def test_reenact_tab_edits_a_still_portrait_with_au_sliders(page, shared_data, tmp_path):
    import PIL.Image

    _tab(page, "Reenact")
    _upload(page, "reenact-source", shared_data / IMAGE)
    page.get_by_text("Edit: AU intensity change").click()
    page.locator("#reenact-AU12").wait_for(state="visible")
    number, knob = page.locator("#reenact-AU12 input[type=number]"), page.locator("#reenact-AU12 input[type=range]")
    for _ in range(10):  # set the slider itself; the accordion's content may be re-rendered once after it opens
        knob.fill("0.8")
        page.wait_for_timeout(300)
        if knob.input_value() == number.input_value() == "0.8":
            break
    assert knob.input_value() == number.input_value() == "0.8"
    page.click("#reenact-run")
    page.locator("#reenact-summary").get_by_text("warp: 1 frame(s)").wait_for()
    page.wait_for_selector("#reenact-image img[src]")
    edited = np.asarray(PIL.Image.open(_download(page, "reenact-files", ".png", tmp_path / "edit.png")))
    source = np.asarray(PIL.Image.open(shared_data / IMAGE).convert("RGB"))
    assert edited.shape == source.shape and np.abs(edited.astype(int) - source).mean() > 0.05  # the smile moved


def _run_reactions(page, speaker: Path, tmp_path: Path):
    """Generate 3 reactions to ``speaker`` in the Reactions tab: the plot shows, the video plays; the reactions
    read back from the Parquet download."""
    import mien

    _tab(page, "Reactions")
    _upload(page, "react-upload", speaker)
    page.click("#react-run")
    page.locator("#react-summary").get_by_text("3 reaction(s)").wait_for()
    page.wait_for_selector("#react-plot img[src]")
    v = _video(page, "react-video")
    assert v["error"] is None and v["duration"] > 0, v
    rx = mien.read_reactions(_download(page, "react-files", ".parquet", tmp_path / "rx.parquet"))
    assert rx.reactions.shape[0] == 3 and rx.reactions.shape[2] == 25 and rx.speaker is not None
    return rx


def test_reactions_tab_generates_reactions(page, shared_data, shots, tmp_path):
    _run_reactions(page, shared_data / SAMPLE, tmp_path)
    _screenshot(page, shots, "reactions")


def test_datasets_tab_shows_summary_and_contact_sheet(page, shots):
    _tab(page, "Datasets")
    page.click("#datasets-run")
    page.locator("#datasets-summary").get_by_text("2 samples").wait_for()
    page.wait_for_selector("#datasets-sheet img[src]")
    assert "shard-" in page.inner_text("#datasets-details") or "shards" in page.inner_text("#datasets-details")
    _screenshot(page, shots, "datasets")


def test_server_serves_nothing_outside_its_folder(app, shared_data):
    import urllib.error
    import urllib.request

    assert app["url"].startswith("http://127.0.0.1:")
    for path in ("/etc/hostname", str(shared_data / SAMPLE), __file__):
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(app["url"] + "gradio_api/file=" + path, timeout=30)
        assert e.value.code == 403, path


def test_analyze_tab_batch_of_images_skips_a_bad_file(page, shared_data, shots, tmp_path):
    """Three files at once: two images and a text file named .png → one batch: the bad file is skipped and named
    in the page, both images are analysed (overlays in the gallery, every row in one Parquet file)."""
    import mien

    bad = tmp_path / "bad.png"
    bad.write_text("not an image\n" * 20)
    files = [shared_data / IMAGE, bad, shared_data / "samples/multi_face.jpg"]
    page.locator("#analyze-upload input[type=file]").set_input_files([str(f) for f in files])
    for f in files:
        page.locator(f'#analyze-upload a[download="{f.name}"][href*="/gradio_api/file="]').first.wait_for(
            state="attached")
    page.click("#analyze-run")
    summary = page.locator("#analyze-summary")
    summary.get_by_text("2 of 3 file(s) analysed").wait_for()
    assert "single_face.jpg: 1 face(s) in 1 frame(s); multi_face.jpg: 1 face(s)" in summary.inner_text()
    assert "skipped bad.png: not a readable image or video (checked by content, not by name)" in summary.inner_text()
    page.wait_for_selector("#analyze-gallery img[src]")
    assert page.locator("#analyze-gallery img[src]").count() == 2
    res = mien.read_results(_download(page, "analyze-files", "analysis.parquet", tmp_path / "all.parquet"))
    assert sorted(set(res.extra["video"].tolist())) == ["multi_face", "single_face"]
    _screenshot(page, shots, "analyze-batch")


def _progress_values(page, elem: str, until) -> list[float]:
    """Percentages shown in ``#elem``'s progress text ("desc - 42.0%") while ``until()`` is false."""
    import re

    seen = []
    for _ in range(int(TIMEOUT_MS / 50)):
        m = re.search(r"(\d+(?:\.\d+)?)%", page.inner_text(f"#{elem}"))
        if m:
            seen.append(float(m.group(1)))
        if until():
            return seen
        page.wait_for_timeout(50)
    raise AssertionError(f"no end in {TIMEOUT_MS} ms; progress seen {seen}")


def test_reenact_tab_progress_webcam_driver_and_stop(page, app, shared_data, tmp_path):
    """Progress moves by driving frame to the end; a clip recorded with the (fake) webcam drives the portrait;
    Stop ends a long job at its next frame and it writes no video."""
    import re

    _tab(page, "Reenact")
    _upload(page, "reenact-source", shared_data / IMAGE)
    _upload(page, "reenact-driving", shared_data / SAMPLE)
    page.click("#reenact-run")
    summary = page.locator("#reenact-summary")
    seen = _progress_values(page, "reenact-video", lambda: "frame(s)" in summary.inner_text())
    assert "warp: 72 frame(s)" in summary.inner_text()
    moving = sorted({v for v in seen if v > 10})
    assert len(moving) >= 2 and moving[-1] >= 50, seen  # by frame, not one step

    _reload(page)  # the webcam recording as the driver
    _tab(page, "Reenact")
    _upload(page, "reenact-source", shared_data / IMAGE)
    _record(page, "reenact-webcam")
    page.click("#reenact-run")
    summary.get_by_text("frame(s)").wait_for()
    text = summary.inner_text()
    frames, fps = int(text.split(": ")[1].split(" frame")[0]), float(text.split(" at ")[1].split(" fps")[0])
    assert frames >= 5 and 5 <= fps <= 60, text  # the recording's real rate, not its time base
    v = _video(page, "reenact-video")
    assert v["error"] is None and v["duration"] > 0, v

    _reload(page)  # Stop
    _tab(page, "Reenact")
    _upload(page, "reenact-source", shared_data / IMAGE)
    _upload(page, "reenact-driving", shared_data / WOLF)  # 472 frames
    page.click("#reenact-run")
    _progress_values(page, "reenact-video", lambda: len(re.findall(r"reenacting - (?!10\.0%)", page.inner_text(
        "#reenact-video"))) > 0)
    page.click("#reenact-stop")
    for _ in range(600):
        if any(ev.is_set() for ev in app["ctx"]._cancel.values()):
            break
        page.wait_for_timeout(100)
    jobs = [d for d in (app["ctx"].files.root / "jobs").iterdir() if (d / "WolfgangLanger_Pexels.mp4").exists()
            and d.name.startswith("reenact")]
    assert len(jobs) == 1
    for _ in range(100):  # the job ends at its next frame: no video, no temporary file left
        if not any(jobs[0].glob("*.mp4")) and not any(jobs[0].glob(".*")):
            break
        page.wait_for_timeout(100)
    assert sorted(p.name for p in jobs[0].iterdir()) == ["WolfgangLanger_Pexels.mp4", "single_face.jpg"]


def _record(page, elem: str, ms: int = 1500) -> None:
    """Record ``ms`` of Chromium's fake camera (the WOLF clip) in the ``gr.Video`` webcam ``#elem``; wait for the
    upload."""
    cam = page.locator(f"#{elem}")
    cam.get_by_text("Click to Access Webcam").click()
    cam.locator("button.capture-button").click()  # record
    page.wait_for_timeout(ms)
    cam.locator("button.capture-button").click()  # stop: the clip is uploaded
    page.wait_for_selector(f"#{elem} video[src*='/gradio_api/file=']")


def test_analyze_tab_webcam_recording(page, shared_data):
    """A clip recorded with the (fake) webcam in the page is analysed like an uploaded video."""
    _record(page, "analyze-webcam")
    page.click("#analyze-run")
    page.wait_for_selector("#table-caption")
    rows = int(page.inner_text("#table-caption").split(" rows")[0])
    assert rows >= 5 and page.locator("#analyze-table tbody tr").count() == rows
    v = _video(page, "analyze-overlay")
    assert v["error"] is None and v["duration"] > 0, v


@pytest.fixture(scope="module")
def trained_reaction_app(browser):
    """A second app whose ``--models`` is ``$MIEN_APP_REACTION_MODEL`` (a trained ``mien export reaction`` folder,
    e.g. the tiny model of docs/benchmarks.md's listener-reaction section); skipped when unset (no trained
    reaction model ships with mien)."""
    folder = os.environ.get("MIEN_APP_REACTION_MODEL")
    if not folder:
        pytest.skip("MIEN_APP_REACTION_MODEL (a trained reaction model folder) is not set")
    from mien.app.main import make_context, serve

    ctx = make_context(models=folder)
    port = _free_port()
    demo = serve(ctx, "127.0.0.1", port, block=False, quiet=True)
    yield {"url": f"http://127.0.0.1:{port}/", "name": Path(folder).name}
    demo.close()
    ctx.files.cleanup()


def test_reactions_tab_with_a_trained_model(browser, trained_reaction_app, shared_data, shots, tmp_path):
    """The Reactions tab with a trained model (its screenshot replaces the random-init one's)."""
    page = browser.new_page()
    try:
        page.goto(trained_reaction_app["url"])
        page.wait_for_selector("#analyze-run")
        _tab(page, "Reactions")
        assert page.locator("#react-model input").input_value() == trained_reaction_app["name"]
        rx = _run_reactions(page, shared_data / SAMPLE, tmp_path)
        assert np.isfinite(rx.reactions[..., :15]).any()
        _screenshot(page, shots, "reactions")
    finally:
        page.close()
