"""Streamed frame sources: video files (PyAV), still images (Pillow) and webcams (OpenCV).

All sources yield :class:`Frame` objects one at a time, so memory stays bounded whatever the video length.
Images are RGB ``uint8`` arrays of shape (H, W, 3) in the orientation a player shows: a video stream's display
matrix (e.g. the rotation −90 of every portrait phone recording) is applied as FFmpeg's ``autorotate`` does,
and an image's EXIF orientation is applied.
"""

from __future__ import annotations

import glob
import logging
import math
import os
import struct
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np

from mien.errors import InputError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
VIDEO_SUFFIXES = frozenset(
    {".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".ts", ".3gp", ".gif"}
)
WEBCAM_PREFIX = "webcam:"

log = logging.getLogger(__name__)


@dataclass
class Frame:
    """One decoded frame.

    Attributes:
        index: 0-based index of the frame in decoding (= presentation) order of the source.
        t_sec: presentation time in seconds, ``(pts - stream.start_time) * time_base`` for videos, so the
            first frame is at ~0 s and variable frame rate is represented exactly; 0.0 for images; seconds
            since capture start (monotonic clock) for webcams.
        image: RGB uint8 array (H, W, 3), C-contiguous, displayed orientation (see the module docstring).
    """

    index: int
    t_sec: float
    image: np.ndarray


@dataclass
class SourceInfo:
    """Static properties of a source.

    Attributes:
        path: the input as given.
        kind: "video", "image" or "webcam".
        width, height: size in pixels of the frames the source yields: the displayed size, i.e. after the
            display rotation (a portrait phone clip stored as 1920×1080 is 1080×1920 here).
        fps: average frame rate in frames/s (None for images or when unknown).
        duration_sec: duration in seconds (None when unknown).
        codec: codec name ("" for images).
        rotation_deg: display rotation of a video stream that was applied to the stored frames, in degrees
            counter-clockwise as FFmpeg, ffprobe and PyAV's ``VideoFrame.rotation`` report it (−90 for a
            portrait phone recording: the stored frames are turned 90° clockwise), one of −90, 0, 90, 180
            (PyAV reports 180 as −180); 0 for images (their EXIF orientation is applied but not recorded
            here) and webcams.
        mirrored: the display matrix also mirrors the picture (applied too; rare).
    """

    path: str
    kind: str
    width: int
    height: int
    fps: float | None
    duration_sec: float | None
    codec: str
    rotation_deg: int = 0
    mirrored: bool = False


class VideoSource:
    """A video file decoded as a stream with PyAV.

    Args:
        path: video file (any container/codec FFmpeg reads, variable frame rate included).
        start: first time in seconds to yield (frames before it are decoded but not converted).
        end: last time in seconds to yield (inclusive), None for the end of the video.
        every: yield every N-th frame (by frame index).

    The stream's display matrix (read from the first decoded frame's side data) is applied to every frame
    by exact pixel reordering (quarter turns and flips, as FFmpeg's ``autorotate``); ``info`` records it.

    Raises:
        InputError: the file is missing, empty, not a video, has no video stream, or no frame decodes.

    Attributes after iteration:
        corrupt_frames: number of packets that failed to decode and were skipped.
        frames_decoded: number of frames decoded (yielded or not).
    """

    kind = "video"

    def __init__(self, path: str | os.PathLike, start: float | None = None, end: float | None = None,
                 every: int = 1):
        self.path = str(path)
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        if start is not None and end is not None and end < start:
            raise ValueError(f"end ({end}) is before start ({start})")
        self.start, self.end, self.every = start, end, every
        _check_file(self.path)
        try:
            container = av.open(self.path)
        except (av.FFmpegError, UnicodeDecodeError) as e:
            raise InputError(self.path, f"not a readable video ({_short(e)})") from None
        try:
            if not container.streams.video:
                raise InputError(self.path, "no video stream")
            stream = container.streams.video[0]
            rate = stream.average_rate
            duration = None
            if stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                duration = container.duration / av.time_base
            if duration is None:  # no timing in the header (a browser's webcam recording)
                from mien.io.packets import packet_timing

                packet_rate, duration = packet_timing(self.path)
                rate = rate or packet_rate
            rate = rate or stream.guessed_rate
            cc = stream.codec_context
            if not cc.width or not cc.height:
                raise InputError(self.path, "video stream has no frame size (truncated or corrupt header)")
            w, h, name = cc.width, cc.height, cc.name
            self._orient = display_orientation(_first_display_matrix(container, stream))
            if self._orient.transpose:
                w, h = h, w
            self.info = SourceInfo(self.path, "video", w, h, float(rate) if rate else None, duration, name,
                                   self._orient.rotation_deg, self._orient.mirrored)
            if self._orient.unsupported:
                log.warning("%s: display rotation of %.1f degrees is not a multiple of 90; frames are analysed "
                            "as stored", self.path, self._orient.unsupported)
        finally:
            container.close()
        self.corrupt_frames = 0
        self.frames_decoded = 0

    def __iter__(self) -> Iterator[Frame]:
        self.corrupt_frames = 0
        self.frames_decoded = 0
        try:
            container = av.open(self.path)
        except av.FFmpegError as e:
            raise InputError(self.path, f"not a readable video ({_short(e)})") from None
        with container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            tb = float(stream.time_base) if stream.time_base else None
            t0 = stream.start_time if stream.start_time is not None else None
            last_t = -1.0
            for frame in self._decode(container, stream):
                index = self.frames_decoded
                self.frames_decoded += 1
                if frame.pts is not None and tb is not None:
                    if t0 is None:
                        t0 = frame.pts
                    t = (frame.pts - t0) * tb
                else:  # no timestamps at all: fall back to the nominal rate
                    t = index / (self.info.fps or 25.0)
                if t <= last_t:  # broken pts (duplicates): keep time strictly increasing
                    t = last_t + 1e-6
                last_t = t
                if self.start is not None and t < self.start - 1e-9:
                    continue
                if self.end is not None and t > self.end + 1e-9:
                    break
                if index % self.every:
                    continue
                yield Frame(index, float(t), self._orient.apply(to_rgb(frame)))
        if self.frames_decoded == 0:
            raise InputError(self.path, "no video frame could be decoded (truncated or corrupt file)")

    def _decode(self, container, stream) -> Iterator[av.VideoFrame]:
        """Decode packet by packet so that one corrupt packet costs one frame, not the whole video."""
        packets = container.demux(stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                return
            except av.FFmpegError:  # unreadable data in the container: stop at what we have
                self.corrupt_frames += 1
                return
            try:
                frames = packet.decode()
            except av.FFmpegError:
                self.corrupt_frames += 1
                continue
            yield from frames


@dataclass(frozen=True)
class Orientation:
    """How stored video frames become displayed frames: optional transpose, then optional flips.

    Every display matrix whose rotation is a multiple of 90° (the 8 EXIF orientations) is one of these.

    Attributes:
        transpose: swap rows and columns first (a quarter turn; width and height swap).
        flip_v: then reverse the rows (upside down).
        flip_h: then reverse the columns (left-right).
        rotation_deg: the display rotation in degrees counter-clockwise (FFmpeg's convention), −90…180.
        mirrored: the transform is a reflection (det < 0).
        unsupported: the rotation in degrees when it is not a multiple of 90 (then nothing is applied).
    """

    transpose: bool = False
    flip_v: bool = False
    flip_h: bool = False
    rotation_deg: int = 0
    mirrored: bool = False
    unsupported: float = 0.0

    def apply(self, image: np.ndarray) -> np.ndarray:
        """Displayed (H', W', C) C-contiguous image of a stored (H, W, C) one (the same array if identity)."""
        if not (self.transpose or self.flip_v or self.flip_h):
            return image
        if self.transpose:
            image = image.swapaxes(0, 1)
        if self.flip_v:
            image = image[::-1]
        if self.flip_h:
            image = image[:, ::-1]
        return np.ascontiguousarray(image)


def display_orientation(matrix: Sequence[int] | None) -> Orientation:
    """The :class:`Orientation` of an FFmpeg display matrix, decided exactly as FFmpeg's ``autorotate``.

    Args:
        matrix: the 9 int32 of ``AV_FRAME_DATA_DISPLAYMATRIX`` (row-major 3×3; a, b, c, d in 16.16 fixed
            point), or None for no matrix.

    Returns:
        The orientation; identity for None or an all-zero (invalid) matrix.
    """
    if matrix is None or len(matrix) != 9:
        return Orientation()
    m = [float(v) for v in matrix]
    s0, s1 = math.hypot(m[0], m[3]), math.hypot(m[1], m[4])
    if s0 == 0 or s1 == 0:
        return Orientation()
    # av_display_rotation_get() = -atan2(b, a) (counter-clockwise); FFmpeg's get_rotation() = its negative mod 360
    ccw = -math.degrees(math.atan2(m[1] / s1, m[0] / s0))
    theta = -round(ccw)
    theta -= 360 * math.floor(theta / 360 + 0.9 / 360)
    mirrored = m[0] * m[4] - m[1] * m[3] < 0
    rot = int(round(ccw / 90.0)) * 90
    rot = 180 if rot == -180 else rot
    if abs(theta - 90) < 1:  # transpose=clock, or cclock_flip when mirrored
        o = Orientation(True, False, not m[3] > 0, rot, mirrored)
    elif abs(theta - 180) < 1:
        o = Orientation(False, m[4] < 0, m[0] < 0, rot, mirrored)
    elif abs(theta - 270) < 1:  # transpose=cclock, or clock_flip when mirrored
        o = Orientation(True, True, m[3] < 0, rot, mirrored)
    elif abs(theta) < 1 or abs(theta - 360) < 1:
        o = Orientation(False, m[4] < 0, False, 0, mirrored)
    else:
        o = Orientation(unsupported=round(ccw, 3))
    return o


def _first_display_matrix(container, stream) -> tuple[int, ...] | None:
    """The display matrix side data of the stream's first decodable frame (None if absent or undecodable)."""
    try:
        for frame in container.decode(stream):
            for sd in frame.side_data:
                if sd.type == av.sidedata.sidedata.Type.DISPLAYMATRIX:
                    return struct.unpack("=9i", bytes(sd)[:36])
            return None
    except (av.FFmpegError, ValueError):
        return None
    return None


def to_rgb(frame: av.VideoFrame) -> np.ndarray:
    """RGB uint8 (H, W, 3) of a decoded frame.

    Limited-range 4:2:0 frames (most H.264/HEVC video) are converted by OpenCV's SIMD YUV→RGB (BT.601),
    several times faster than FFmpeg's swscale here; every other pixel format goes through swscale.
    """
    if frame.format.name == "yuv420p" and frame.width % 2 == 0 and frame.height % 2 == 0:
        return cv2.cvtColor(frame.to_ndarray(), cv2.COLOR_YUV2RGB_I420)
    return frame.to_ndarray(format="rgb24")


class ImageSource:
    """A still image read with Pillow (EXIF orientation applied, converted to RGB).

    Raises:
        InputError: the file is missing, empty or not a decodable image.
    """

    kind = "image"

    def __init__(self, path: str | os.PathLike):
        from PIL import Image, ImageOps, UnidentifiedImageError

        self.path = str(path)
        _check_file(self.path)
        try:
            with Image.open(self.path) as im:
                im = ImageOps.exif_transpose(im)
                self._image = np.asarray(im.convert("RGB"))
        except (UnidentifiedImageError, OSError, SyntaxError) as e:
            raise InputError(self.path, f"not a readable image ({_short(e)})") from None
        h, w = self._image.shape[:2]
        self.info = SourceInfo(self.path, "image", w, h, None, None, "")
        self.corrupt_frames = 0
        self.frames_decoded = 1

    def __iter__(self) -> Iterator[Frame]:
        yield Frame(0, 0.0, self._image)


class WebcamSource:
    """Live frames from a camera through OpenCV until :meth:`stop` is called or the camera ends.

    Args:
        index: camera index (``webcam:0`` → 0).
        max_seconds: stop after this many seconds (None: until stopped).

    Raises:
        InputError: the camera cannot be opened.
    """

    kind = "webcam"

    def __init__(self, index: int = 0, max_seconds: float | None = None):
        import cv2

        self.path = f"{WEBCAM_PREFIX}{index}"
        self._cap = cv2.VideoCapture(index)
        if not self._cap.isOpened():
            raise InputError(self.path, "cannot open camera")
        w = int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        h = int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        fps = self._cap.get(cv2.CAP_PROP_FPS) or None
        self.info = SourceInfo(self.path, "webcam", w, h, fps, None, "")
        self.max_seconds = max_seconds
        self._stopped = False
        self.corrupt_frames = 0
        self.frames_decoded = 0

    def stop(self) -> None:
        self._stopped = True

    def __iter__(self) -> Iterator[Frame]:
        import cv2

        t_start = time.monotonic()
        try:
            while not self._stopped:
                ok, bgr = self._cap.read()
                if not ok:
                    break
                t = time.monotonic() - t_start
                if self.max_seconds is not None and t > self.max_seconds:
                    break
                index = self.frames_decoded
                self.frames_decoded += 1
                yield Frame(index, t, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        finally:
            self._cap.release()


def open_source(spec: str | os.PathLike, start: float | None = None, end: float | None = None,
                every: int = 1) -> VideoSource | ImageSource | WebcamSource:
    """Open a video file, an image file or ``webcam:N`` as a frame source.

    Images are recognised by suffix (.jpg, .png, …); everything else is opened as a video.

    Raises:
        InputError: see the source classes.
    """
    s = str(spec)
    if s.startswith(WEBCAM_PREFIX):
        try:
            idx = int(s[len(WEBCAM_PREFIX):] or 0)
        except ValueError:
            raise InputError(s, "webcam index must be an integer, e.g. webcam:0") from None
        return WebcamSource(idx)
    if Path(s).suffix.lower() in IMAGE_SUFFIXES:
        return ImageSource(s)
    return VideoSource(s, start=start, end=end, every=every)


def expand_inputs(specs: Sequence[str | os.PathLike]) -> list[str]:
    """Expand folders (non-recursive) and glob patterns into a sorted list of media files.

    A folder contributes its files with a known image or video suffix. A pattern that matches nothing and
    a path that does not exist are kept as they are, so that the caller reports them as bad inputs.
    """
    out: list[str] = []
    for spec in specs:
        s = str(spec)
        if s.startswith(WEBCAM_PREFIX):
            out.append(s)
        elif os.path.isdir(s):
            files = [str(p) for p in sorted(Path(s).iterdir())
                     if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES]
            out.extend(files)
        elif any(c in s for c in "*?[") and not os.path.exists(s):
            matches = sorted(glob.glob(s, recursive=True))
            out.extend(matches if matches else [s])
        else:
            out.append(s)
    seen: set[str] = set()
    return [s for s in out if not (s in seen or seen.add(s))]


def _check_file(path: str) -> None:
    if not os.path.exists(path):
        raise InputError(path, "no such file")
    if os.path.isdir(path):
        raise InputError(path, "is a folder, not a file")
    if os.path.getsize(path) == 0:
        raise InputError(path, "file is empty")


def _short(e: BaseException) -> str:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return msg[:200]
