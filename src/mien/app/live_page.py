"""The Live tab's page side: a few dozen lines of JavaScript in a ``gr.HTML`` that take the webcam's frames
(``getUserMedia`` → canvas → JPEG) to the server through Gradio's component-server route (a plain HTTP POST per
frame, no queue, no file cache), keep :data:`IN_FLIGHT` frames in flight and show the returned overlays; and the
server side's frame codec (:func:`decode_frame`, :func:`encode_preview`).

Why not ``gr.Image(streaming=True)``: each streamed frame is a queued event (join, SSE messages), its output a
JPEG file in Gradio's cache that the page then fetches, one frame in flight: 4–11 frames/s in the page while the
server's work takes 10–16 ms a frame (docs/benchmarks.md). A server function (``gr.HTML(server_functions=…)``)
answers in the same request, so frames go as fast as the analysis allows.

Nothing the page sends is a path: a frame is a ``data:image/jpeg;base64,…`` string, checked (size, JPEG by
content, pixels) before it is decoded, and answered the same way.
"""

import base64
import binascii
import io

import numpy as np

from mien.errors import InputError

MAX_FRAME_BYTES = 4_000_000
"""Largest frame accepted (bytes of JPEG)."""
IN_FLIGHT = 2
"""Frames the page keeps in flight: the next frame's upload and decoding overlap the current one's analysis."""
JPEG_QUALITY = 80
"""Quality of the overlay JPEG sent back (OpenCV's 0–100)."""
_PREFIX = "data:image/jpeg;base64,"


def decode_frame(data_url, max_pixels: int) -> np.ndarray:
    """The RGB uint8 (H, W, 3) image of a frame the page sent.

    Args:
        data_url: ``data:image/jpeg;base64,…`` (what ``canvas.toDataURL("image/jpeg")`` gives).
        max_pixels: largest width × height accepted (checked from the JPEG header, before decoding).

    Raises:
        InputError: not a JPEG data URL, larger than :data:`MAX_FRAME_BYTES`, not a JPEG by content, too many
            pixels, or undecodable.
    """
    import cv2
    import PIL.Image

    if not isinstance(data_url, str) or not data_url.startswith(_PREFIX):
        raise InputError("webcam frame", "not a JPEG data URL")
    if len(data_url) > len(_PREFIX) + MAX_FRAME_BYTES * 4 // 3 + 4:
        raise InputError("webcam frame", f"larger than {MAX_FRAME_BYTES // 1_000_000} MB")
    try:
        raw = base64.b64decode(data_url[len(_PREFIX):], validate=True)
    except (binascii.Error, ValueError):
        raise InputError("webcam frame", "not valid base64") from None
    try:
        with PIL.Image.open(io.BytesIO(raw)) as im:
            fmt, (w, h) = im.format, im.size
    except Exception:  # noqa: BLE001 (any failure: not an image)
        fmt, w, h = None, 0, 0
    if fmt != "JPEG":
        raise InputError("webcam frame", "not a JPEG image (checked by content)")
    if w * h > max_pixels:
        raise InputError("webcam frame", f"{w}x{h} px is larger than the limit of {max_pixels} pixels")
    bgr = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise InputError("webcam frame", "the JPEG could not be decoded")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def encode_preview(image: np.ndarray, quality: int = JPEG_QUALITY) -> str:
    """An RGB uint8 (H, W, 3) image as a ``data:image/jpeg;base64,…`` string (libjpeg-turbo through OpenCV;
    ``quality`` 0–100).

    Raises:
        ValueError: OpenCV could not encode the image.
    """
    import cv2

    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("the preview could not be encoded as JPEG")
    return _PREFIX + base64.b64encode(buf.tobytes()).decode("ascii")


HTML = """
<div class="mien-live">
  <div class="mien-live-row">
    <video class="mien-live-cam" muted playsinline></video>
    <img class="mien-live-out" alt="overlay">
  </div>
  <button class="mien-live-start lg secondary">Start camera</button>
  <span class="mien-live-line"></span>
</div>
"""

CSS = """
.mien-live-row { display: flex; gap: 8px; flex-wrap: wrap; align-items: flex-start; }
.mien-live-cam { width: 240px; background: #111; border-radius: 4px; }
.mien-live-out { width: 640px; max-width: 100%; min-height: 120px; background: #111; border-radius: 4px; }
.mien-live-start { margin-top: 6px; padding: 4px 14px; border-radius: 6px; border: 1px solid #999; }
.mien-live-line { margin-left: 10px; font-family: monospace; }
"""

JS = """
const video = element.querySelector('.mien-live-cam');
const img = element.querySelector('.mien-live-out');
const line = element.querySelector('.mien-live-line');
const btn = element.querySelector('.mien-live-start');
const grab = document.createElement('canvas');
const S = {maxInFlight: __IN_FLIGHT__, running: false, sent: 0, shown: 0, late: 0, errors: 0, inflight: 0,
           lastT: -1, times: [], fps: 0, stream: null};
window.mienLive = S;
const say = (text) => { line.textContent = text; };
async function start() {
  try {
    S.stream = await navigator.mediaDevices.getUserMedia(
      {video: {width: {ideal: 640}, height: {ideal: 480}}, audio: false});
  } catch (e) { say('camera: ' + (e.name || e) + (e.message ? ': ' + e.message : '')); return; }
  video.srcObject = S.stream;
  await video.play();
  Object.assign(S, {running: true, sent: 0, shown: 0, late: 0, errors: 0, lastT: -1, times: [], fps: 0});
  btn.textContent = 'Stop camera';
  video.requestVideoFrameCallback(tick);
}
function stop() {
  S.running = false;
  if (S.stream) S.stream.getTracks().forEach((t) => t.stop());
  video.srcObject = null;
  btn.textContent = 'Start camera';
}
btn.addEventListener('click', () => (S.running ? stop() : start()));
function tick(now) {
  if (!S.running) return;
  if (S.inflight < S.maxInFlight && video.videoWidth) send(now / 1000);
  video.requestVideoFrameCallback(tick);
}
async function send(t) {
  grab.width = video.videoWidth;
  grab.height = video.videoHeight;
  grab.getContext('2d').drawImage(video, 0, 0);
  const image = grab.toDataURL('image/jpeg', 0.85);
  S.inflight++;
  S.sent++;
  let r;
  try { r = await server.live_frame({image: image, t: t, session: window.__gradio_session_hash__}); } catch (e) { r = {error: String(e)}; }
  S.inflight--;
  if (!r) r = {error: 'no answer from the server'};
  if (r.error) { S.errors++; say(r.error); return; }
  if (r.late || t <= S.lastT) { S.late++; return; }
  S.lastT = t;
  S.shown++;
  img.src = r.image;
  const now = performance.now();
  S.times.push(now);
  if (S.times.length > 30) S.times.shift();
  if (S.shown % 10 === 0 && S.times.length > 1) {  // frames/s over the last 30 frames shown
    S.fps = (S.times.length - 1) / ((now - S.times[0]) / 1000);
    say(S.fps.toFixed(1) + ' frames/s' + (r.recording ? ' · recording' : ''));
  }
}
""".replace("__IN_FLIGHT__", str(IN_FLIGHT))

__all__ = ["CSS", "HTML", "IN_FLIGHT", "JPEG_QUALITY", "JS", "MAX_FRAME_BYTES", "decode_frame", "encode_preview"]
