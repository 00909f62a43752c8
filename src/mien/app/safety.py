"""Upload checks: the file must be one Gradio stored in the app's upload folder, within the size and duration
limits, and an image (PIL) or a video (PyAV) by its content, whatever its name says.

Only the copy made here, inside the job's folder and named by what the content is, is handed to mien.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from mien.errors import InputError

IMAGE_FORMATS = {"JPEG": ".jpg", "PNG": ".png", "BMP": ".bmp", "WEBP": ".webp", "TIFF": ".tif"}
"""Image formats accepted (PIL format name → the suffix the checked copy gets)."""


@dataclass(frozen=True)
class Limits:
    """Upload limits of the app.

    Attributes:
        max_upload_mb: largest upload in MB (10^6 bytes); also Gradio's ``max_file_size``.
        max_video_seconds: longest video accepted, s.
        max_pixels: largest image or video frame (width × height).
    """

    max_upload_mb: float = 200.0
    max_video_seconds: float = 600.0
    max_pixels: int = 4096 * 4096


@dataclass(frozen=True)
class Media:
    """A checked upload.

    Attributes:
        path: the checked copy inside the job folder (use this, never the upload path).
        kind: "image" or "video". name: the name the user gave (for messages and output names).
        width, height: px. duration_sec: video duration in s (0 for images).
    """

    path: str
    kind: str
    name: str
    width: int
    height: int
    duration_sec: float = 0.0


def _safe_stem(name: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).stem).strip("._") or "input"
    return stem[:60]


def check_upload(upload: str | os.PathLike | None, files, job_dir: str | os.PathLike, limits: Limits,
                 kinds: tuple[str, ...] = ("image", "video"), name: str | None = None) -> Media:
    """Check an uploaded file and copy it into ``job_dir`` under a name that matches its content.

    Args:
        upload: the path Gradio gave for the upload.
        files: the app's :class:`~mien.app.files.AppFiles` (the upload must lie inside its folder).
        job_dir: the job's folder (inside the app's folder).
        limits: :class:`Limits`.
        kinds: accepted kinds ("image", "video").
        name: the user's file name for messages (default the upload's base name).

    Returns:
        :class:`Media` (a second upload of the same name in ``job_dir`` gets ``<stem>-2<suffix>``, …).

    Raises:
        InputError: no file, not an uploaded file, too large, too long, not an image/video by content, or a
            kind not accepted; the message names the user's file name, never a server path.
    """
    if not upload:
        raise InputError("input", "no file was uploaded")
    name = name or os.path.basename(str(upload))
    if not files.contains(upload) or not os.path.isfile(upload):
        raise InputError(name, "not a file uploaded to this app")
    size = os.path.getsize(upload)
    if size == 0:
        raise InputError(name, "the file is empty")
    if size > limits.max_upload_mb * 1e6:
        raise InputError(name, f"the file is {size / 1e6:.0f} MB; the limit is {limits.max_upload_mb:.0f} MB")
    media = _probe_image(upload, name)
    if media is not None and "image" not in kinds:
        raise InputError(name, f"an image; this needs a {' or '.join(kinds)}")
    if media is None and "video" in kinds:
        media = _probe_video(upload, name, limits)
    if media is None:
        raise InputError(name, f"not a readable {' or '.join(kinds)} (checked by content, not by name)")
    if media.width * media.height > limits.max_pixels:
        raise InputError(name, f"{media.width}x{media.height} px is larger than the limit of "
                               f"{limits.max_pixels} pixels")
    dst = Path(job_dir) / (_safe_stem(name) + media.path)
    k = 1
    while dst.exists():  # several uploads of one name in a job: each keeps its own copy
        k += 1
        dst = Path(job_dir) / f"{_safe_stem(name)}-{k}{media.path}"
    shutil.copyfile(upload, dst)
    return Media(str(dst), media.kind, name, media.width, media.height, media.duration_sec)


def _probe_image(path, name: str) -> Media | None:
    import PIL.Image

    try:
        with PIL.Image.open(path) as im:
            fmt = im.format
            w, h = im.size
            im.verify()
    except Exception:  # noqa: BLE001 (any failure: not an image)
        return None
    if fmt not in IMAGE_FORMATS:
        raise InputError(name, f"{fmt} images are not supported (use {', '.join(IMAGE_FORMATS)})")
    return Media(IMAGE_FORMATS[fmt], "image", name, w, h)


def _probe_video(path, name: str, limits: Limits) -> Media | None:
    import av

    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                return None
            s = c.streams.video[0]
            w, h = s.codec_context.width, s.codec_context.height
            dur = (float(c.duration) / 1e6 if c.duration else
                   float(s.duration * s.time_base) if s.duration and s.time_base else 0.0)
            frame = next(c.decode(s), None)
            if frame is None:
                return None
            fmt = c.format.name.split(",")[0]
            if fmt == "image2" or fmt.endswith("_pipe"):  # a still image PIL does not read (not a video)
                return None
            if not dur:  # no duration in the header (a browser's webcam recording): from its packets
                from mien.io.packets import packet_timing

                dur = packet_timing(path)[1] or 0.0
    except InputError:
        raise
    except Exception:  # noqa: BLE001 (any failure: not a video)
        return None
    if dur > limits.max_video_seconds:
        raise InputError(name, f"the video is {dur:.0f} s long; the limit is {limits.max_video_seconds:.0f} s")
    suffix = {"mov": ".mp4", "matroska": ".mkv", "avi": ".avi"}.get(fmt, ".video")
    return Media(suffix, "video", name, w or frame.width, h or frame.height, dur)


MAX_BODY_BYTES = 8_000_000
"""Largest HTTP request body the app reads outside Gradio's file-upload route (a Live frame is at most ~5.3 MB as a
base64 data URL; event payloads carry file references, not files)."""

UPLOAD_ROUTE = "/gradio_api/upload"


class BodyLimit:
    """ASGI middleware: refuses (HTTP 413) a request body over ``max_bytes`` on every route but Gradio's file-upload
    route (``UPLOAD_ROUTE``, limited by Gradio's ``max_file_size``), by its Content-Length when it has one, else by
    counting the body as it arrives (the app then sees the client disconnect). Gradio's JSON routes (e.g. the
    component-server route the Live tab's frames take) read whatever body they get; this is their cap."""

    def __init__(self, app, max_bytes: int = MAX_BODY_BYTES):
        self.app, self.max_bytes = app, int(max_bytes)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"].startswith(UPLOAD_ROUTE):
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            from starlette.responses import PlainTextResponse

            return await PlainTextResponse(f"request body over {self.max_bytes // 1_000_000} MB", 413)(
                scope, receive, send)
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    return {"type": "http.disconnect"}
            return message

        return await self.app(scope, counted, send)


__all__ = ["IMAGE_FORMATS", "MAX_BODY_BYTES", "UPLOAD_ROUTE", "BodyLimit", "Limits", "Media", "check_upload"]
