"""Live tab: the browser's webcam streamed frame by frame through a :class:`mien.pipelines.live.LiveSession`
(landmarks, box, head-pose axes, gaze rays, blink marker); Record / Stop & save write the session's video and
table."""

import threading

import gradio as gr

from mien.app.jobs import AppContext, user_errors
from mien.pipelines.live import LiveSession

TITLE = "Live"
STREAM_EVERY = 0.04
"""Seconds between frames the page sends (at most 25 frames/s asked for; the server's speed decides the rest)."""


class Sessions:
    """One :class:`LiveSession` per browser session, closed when the page goes away."""

    def __init__(self):
        self._lock = threading.Lock()
        self._by_id: dict[str, LiveSession] = {}

    def get(self, sid: str) -> LiveSession:
        with self._lock:
            if sid not in self._by_id:
                self._by_id[sid] = LiveSession()
            return self._by_id[sid]

    def close(self, sid: str) -> None:
        with self._lock:
            s = self._by_id.pop(sid, None)
        if s is not None:
            s.close()


def build(ctx: AppContext) -> None:
    sessions = Sessions()
    with gr.Row():
        cam = gr.Image(sources=["webcam"], streaming=True, type="numpy", label="Webcam", elem_id="live-cam")
        out = gr.Image(label="Overlay", streaming=True, elem_id="live-out", interactive=False, format="jpeg")
    with gr.Row():
        record = gr.Button("Record", elem_id="live-record")
        save = gr.Button("Stop and save", elem_id="live-save")
    status = gr.Markdown(elem_id="live-status")
    files = gr.File(label="Recording", file_count="multiple", elem_id="live-files", interactive=False)

    @user_errors
    def on_frame(image, request: gr.Request):
        if image is None:
            return None
        return sessions.get(request.session_hash).push(image)

    @user_errors
    def on_record(request: gr.Request):
        s = sessions.get(request.session_hash)
        s.start_recording(ctx.files.job("live"))
        return "Recording… (press **Stop and save** to finish)"

    @user_errors
    def on_save(request: gr.Request):
        rec = sessions.get(request.session_hash).stop_recording()
        if rec is None:
            return "Not recording.", None
        return (f"Saved {rec.frames} frames at {rec.fps:.0f} fps: {rec.result.summary()}", [rec.video, rec.parquet])

    cam.stream(on_frame, [cam], [out], stream_every=STREAM_EVERY, concurrency_limit=None, show_progress="hidden",
               concurrency_id="live")
    record.click(on_record, None, [status])
    save.click(on_save, None, [status, files])
    # the Blocks' unload hook (registered by main) closes this page's session
    ctx.on_unload.append(sessions.close)
