"""Live tab: the browser's webcam streamed frame by frame through a :class:`mien.pipelines.live.LiveSession`
(landmarks, box, head-pose axes, gaze rays; AU and emotion bars when ticked); Record / Stop & save write the
session's video and table.

Frames travel through a Gradio server function of the page's ``gr.HTML`` (:mod:`mien.app.live_page`: one HTTP
request per frame, several in flight), not Gradio's webcam streaming (one queued event and one cached file per
frame, one in flight).
"""

import logging
import re
import threading
import time

import gradio as gr

from mien.app.jobs import AppContext, one_line, user_errors
from mien.app.live_page import CSS, HTML, JS, decode_frame, encode_preview
from mien.pipelines.live import LiveSession, live_options

TITLE = "Live"
SESSION = re.compile(r"[A-Za-z0-9_-]{1,64}")
"""What a Gradio session hash looks like."""
MAX_SESSIONS = 8
"""Live sessions (pages with the camera on) served at once; each holds a face landmarker."""
IDLE_SECONDS = 300.0
"""A session without frames for this long (and not recording) is closed when a new one needs room."""
log = logging.getLogger("mien.app")


class Sessions:
    """One :class:`LiveSession` per browser session, closed when the page goes away; at most
    :data:`MAX_SESSIONS` at once (sessions idle for :data:`IDLE_SECONDS` and not recording are closed first)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._by_id: dict[str, LiveSession] = {}
        self._used: dict[str, float] = {}

    def get(self, sid: str) -> LiveSession:
        """The session of ``sid`` (created when new).

        Raises:
            ValueError: :data:`MAX_SESSIONS` sessions are open.
        """
        idle = []
        with self._lock:
            now = time.monotonic()
            if sid not in self._by_id:
                stale = [k for k, s in self._by_id.items() if now - self._used[k] > IDLE_SECONDS and not s.recording]
                idle = [self._by_id.pop(k) for k in stale]
                for k in stale:
                    del self._used[k]
                if len(self._by_id) >= MAX_SESSIONS:
                    raise ValueError(f"too many live sessions ({MAX_SESSIONS}); close another Live page")
                self._by_id[sid] = LiveSession()
            self._used[sid] = now
            s = self._by_id[sid]
        for old in idle:
            old.close()
        return s

    def close(self, sid: str) -> None:
        with self._lock:
            s = self._by_id.pop(sid, None)
            self._used.pop(sid, None)
        if s is not None:
            s.close()


def build(ctx: AppContext) -> None:
    sessions = Sessions()

    def live_frame(payload) -> dict:
        """One webcam frame ``{"image": JPEG data URL, "t": capture time in s, "session": the page's Gradio
        session hash}`` → ``{"image": overlay data URL, "recording": bool}``, ``{"late": true}`` (a later frame
        was already analysed) or ``{"error": one line}``.

        The session hash comes in the payload: Gradio's component-server route does not pass it on (its
        ``gr.Request`` has none), and the Record buttons' events find the same :class:`LiveSession` by it."""
        try:
            if not isinstance(payload, dict):
                raise ValueError("webcam frame: expected {image, t, session}")
            sid, t = payload.get("session"), payload.get("t")
            if not isinstance(sid, str) or not SESSION.fullmatch(sid):
                raise ValueError("webcam frame: no session (reload the page)")
            if not isinstance(t, (int, float)) or isinstance(t, bool):
                raise ValueError("webcam frame: no capture time")
            s = sessions.get(sid)
            with s.reserve(float(t)):  # decoded while the frame before is analysed, then analysed in order
                out = s.push(decode_frame(payload.get("image"), ctx.limits.max_pixels), float(t))
            if out is None:
                return {"late": True}
            return {"image": encode_preview(out), "recording": s.recording}
        except ValueError as e:
            return {"error": one_line(e)}
        except Exception as e:  # noqa: BLE001 (one line in the page; the traceback goes to the server log)
            log.exception("mien app: live frame failed")
            return {"error": f"internal error ({type(e).__name__}); the server log has the details"}

    gr.HTML(html_template=HTML, css_template=CSS, js_on_load=JS, server_functions=[live_frame], elem_id="live-view",
            apply_default_css=True)
    with gr.Row():
        au = gr.Checkbox(False, label="AU bars (mien's AU model; slower)", elem_id="live-au")
        emotion = gr.Checkbox(False, label="Emotion bars (face-api FaceExpressionNet; slower)", elem_id="live-emotion")
    with gr.Row():
        record = gr.Button("Record", elem_id="live-record")
        save = gr.Button("Stop and save", elem_id="live-save")
    status = gr.Markdown(elem_id="live-status")
    files = gr.File(label="Recording", file_count="multiple", elem_id="live-files", interactive=False)

    @user_errors
    def on_options(au_on: bool, emotion_on: bool, request: gr.Request):
        sessions.get(request.session_hash).configure(live_options(au=bool(au_on), emotion=bool(emotion_on)))
        on = [n for n, v in (("AU", au_on), ("emotion", emotion_on)) if v]
        return f"Bars: {', '.join(on) if on else 'off'}."

    @user_errors
    def on_record(request: gr.Request):
        s = sessions.get(request.session_hash)
        s.start_recording(ctx.files.job("live"))
        # the bar options change the table's columns: locked while recording (LiveSession.configure refuses too)
        locked = gr.update(interactive=False)
        return "Recording… (press **Stop and save** to finish)", locked, locked

    @user_errors
    def on_save(request: gr.Request):
        rec = sessions.get(request.session_hash).stop_recording()
        free = gr.update(interactive=True)
        if rec is None:
            return "Not recording.", None, free, free
        return (f"Saved {rec.frames} frames at {rec.fps:.0f} fps: {rec.result.summary()}", [rec.video, rec.parquet],
                free, free)

    for box in (au, emotion):
        box.change(on_options, [au, emotion], [status], show_progress="hidden", concurrency_id="live",
                   concurrency_limit=None)
    record.click(on_record, None, [status, au, emotion])
    save.click(on_save, None, [status, files, au, emotion])
    # the Blocks' unload hook (registered by main) closes this page's session
    ctx.on_unload.append(sessions.close)
