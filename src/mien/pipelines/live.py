"""Live analysis of frames pushed one at a time (a browser webcam, a video call): preview images and, between
:meth:`LiveSession.start_recording` and :meth:`LiveSession.stop_recording`, the session's table and video.

:func:`mien.pipelines.analyze.analyze` pulls frames from a source it opens itself; a web page instead sends
frames whenever its camera has one, so :class:`LiveSession` keeps the same
:class:`~mien.pipelines.frame_analyzer.FrameAnalyzer` state between calls and is fed frame by frame.
"""

from __future__ import annotations

import bisect
import dataclasses
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from mien.io.video import Frame
from mien.pipelines.analyze import AnalyzeOptions
from mien.pipelines.frame_analyzer import FrameAnalyzer
from mien.results.result import AnalysisResult

ORDER_WAIT = 1.0
"""Longest wait (s) of a frame for an earlier :meth:`LiveSession.reserve`-d one."""
KEEP_ROWS = 256
"""Rows kept between frames while not recording: the preview needs only the current frame's (and the heads' latest
batch)."""


@dataclass
class Recording:
    """What :meth:`LiveSession.stop_recording` wrote.

    Attributes:
        result: the recorded frames' :class:`~mien.AnalysisResult` (``t_sec`` from the recording start).
        video: path of the recorded MP4 (the frames as received, no overlay); parquet: its table.
        frames: frames recorded; fps: the frame rate the video is written at (the rate frames arrived).
    """

    result: AnalysisResult
    video: str
    parquet: str
    frames: int
    fps: float


class LiveSession:
    """Analyse frames pushed one by one; thread-safe (one frame at a time).

    Args:
        options: :class:`~mien.AnalyzeOptions` (default: :func:`live_options`: no re-identification, which live
            previews do not need; the neural heads ``emotion``/``au`` add their cost per frame and their bars to
            the preview).

    The default preview draws landmarks, box, id, head-pose axes and gaze rays
    (:func:`mien.viz.live.live_preview`).

    Attributes:
        rate: frames/s at which frames arrive (moving average). late: frames skipped because they arrived after
            a later one (a web page keeps several frames in flight; the table stays in time order).
    """

    def __init__(self, options: AnalyzeOptions | None = None):
        self.options = options or live_options()
        self.late = 0
        self._lock = threading.Lock()
        self._order = threading.Condition()
        self._reserved: list[float] = []  # times of frames announced by reserve(), sorted
        self._fa: FrameAnalyzer | None = None
        self._size: tuple[int, int] | None = None
        self._index = 0
        self._t0 = time.monotonic()
        self._last_t: float | None = None
        self.rate = 0.0  # frames/s at which frames arrive (exponential moving average)
        self._writer = None
        self._rec: dict | None = None

    def _analyzer(self, w: int, h: int) -> FrameAnalyzer:
        if self._fa is None or self._size != (w, h):
            if self._fa is not None:
                self._fa.close()
            self._fa = FrameAnalyzer(w, h, self.options)
            self._size = (w, h)
            self._index = 0
        return self._fa

    def configure(self, options: AnalyzeOptions) -> None:
        """Use ``options`` from the next frame on (a fresh analyzer: track ids restart).

        Raises:
            ValueError: while recording (the table's columns would change mid-way).
        """
        with self._lock:
            if self._writer is not None:
                raise ValueError("stop the recording before changing the live options")
            self.options = options
            if self._fa is not None:
                self._fa.close()
                self._fa = None

    @contextmanager
    def reserve(self, t_sec: float):
        """Announce a frame at ``t_sec`` before it is ready (e.g. while it is being decoded): until its
        :meth:`push` (or the end of the ``with`` block), pushes of later frames from other threads wait for it,
        at most :data:`ORDER_WAIT` s, so that frames sent concurrently are analysed in time order rather than
        skipped as late."""
        t = float(t_sec)
        with self._order:
            bisect.insort(self._reserved, t)
        try:
            yield
        finally:
            self._release(t)

    def _release(self, t: float) -> None:
        with self._order:
            if t in self._reserved:
                self._reserved.remove(t)
                self._order.notify_all()

    def push(self, image: np.ndarray, t_sec: float | None = None) -> np.ndarray | None:
        """Analyse one frame and return its preview.

        Args:
            image: RGB uint8 (H, W, 3) frame (RGBA and gray are converted).
            t_sec: its time in seconds (default: seconds since the session started, monotonic clock); finite.

        Returns:
            RGB uint8 (H, W, 3) preview (:func:`mien.viz.live.live_preview`), or None for a late frame (``t_sec``
            not after the last frame's: skipped and counted in :attr:`late`).

        Raises:
            ValueError: not an (H, W), (H, W, 3) or (H, W, 4) uint8 image; ``t_sec`` not finite.
        """
        image = _rgb(image)
        t = time.monotonic() - self._t0 if t_sec is None else float(t_sec)
        if not np.isfinite(t):
            raise ValueError(f"frame time {t_sec!r} is not a finite number of seconds")
        with self._order:  # frames announced earlier (reserve) go first
            self._order.wait_for(lambda: not self._reserved or self._reserved[0] >= t, ORDER_WAIT)
        try:
            return self._push(image, t, t_sec is not None)
        finally:
            self._release(t)

    def _push(self, image: np.ndarray, t: float, given: bool) -> np.ndarray | None:
        from mien.viz.live import live_preview

        with self._lock:
            if given and self._last_t is not None and t <= self._last_t:
                self.late += 1
                return None
            if self._last_t is not None and t > self._last_t:
                inst = 1.0 / (t - self._last_t)
                self.rate = inst if self.rate == 0 else 0.9 * self.rate + 0.1 * inst
            self._last_t = t
            h, w = image.shape[:2]
            if self._writer is not None and (w, h) != self._size:
                raise ValueError(f"frame size changed during a recording ({self._size} -> {(w, h)})")
            fa = self._analyzer(w, h)
            if self._rec is not None and self._rec["t0"] is None:
                self._rec["t0"] = t
            frame = Frame(self._index, t - (self._rec["t0"] if self._rec else 0.0), image)
            fa.process(frame)
            self._index += 1
            out = live_preview(image, frame.index, fa)
            if self._writer is not None:
                self._writer.write(image)
                self._rec["frames"] += 1
            elif len(fa.rows["frame"]) > KEEP_ROWS:
                fa.drop_rows(KEEP_ROWS)
            return out

    @property
    def recording(self) -> bool:
        return self._writer is not None

    def start_recording(self, folder: str | os.PathLike, fps: float | None = None) -> None:
        """Start saving the frames and their rows; frame indices and ``t_sec`` restart at 0.

        Args:
            folder: where :meth:`stop_recording` writes ``live.mp4`` and ``live.parquet``.
            fps: frame rate of the video (default: the rate frames have been arriving at, 1–60, else 15).
        """
        from mien.io.writer import VideoWriter

        with self._lock:
            if self._writer is not None:
                return
            if self._fa is not None:  # a fresh analyzer: the table holds the recording only
                self._fa.close()
                self._fa = None
            rate = fps or (self.rate if self.rate > 0 else 15.0)
            rate = float(min(max(round(rate), 1), 60))
            os.makedirs(folder, exist_ok=True)
            video = os.path.join(folder, "live.mp4")
            self._writer = VideoWriter(video, rate)
            self._rec = {"folder": str(folder), "video": video, "fps": rate, "frames": 0, "t0": None}

    def stop_recording(self) -> Recording | None:
        """Stop recording; write the table (Parquet) next to the video. None when not recording."""
        with self._lock:
            if self._writer is None:
                return None
            self._writer.close()
            rec, self._writer, self._rec = self._rec, None, None
            w, h = self._size or (0, 0)
            meta = {"source": "live", "source_kind": "webcam", "width": w, "height": h, "fps": rec["fps"],
                    "frames_processed": rec["frames"], "landmark_scheme": "mediapipe478",
                    "options": dataclasses.asdict(self.options) | {"progress": False}}
            if self._fa is None:
                result = AnalysisResult.from_columns({"frame": np.zeros(0, np.int64)}, meta=meta)
            else:
                meta["camera"] = {"focal_px": float(self._fa.pose.K[0, 0]), "cx": float(self._fa.pose.K[0, 2]),
                                  "cy": float(self._fa.pose.K[1, 2])}
                meta["models"] = self._fa.model_meta()
                result = self._fa.result(meta)
                self._fa.close()
                self._fa = None  # the next frames start a fresh, unrecorded table
            parquet = os.path.join(rec["folder"], "live.parquet")
            result.to_parquet(parquet)
            return Recording(result, rec["video"], parquet, rec["frames"], rec["fps"])

    def close(self) -> None:
        """Stop a recording (written) and release the analyzer."""
        self.stop_recording()
        with self._lock:
            if self._fa is not None:
                self._fa.close()
                self._fa = None


def live_options(au: bool = False, emotion: bool = False) -> AnalyzeOptions:
    """:class:`~mien.AnalyzeOptions` for live previews: no re-identification; the ``au``/``emotion`` heads (their
    bars in the preview) on request, run on each frame's faces as soon as the frame is in (``batch_size=1``) and
    without the per-person AU baseline (a live stream has no whole track to take it from)."""
    return AnalyzeOptions(identity=False, au=au, emotion=emotion, batch_size=1, au_baseline=False)


def _rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise ValueError(f"expected an RGB uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3])


__all__ = ["KEEP_ROWS", "ORDER_WAIT", "LiveSession", "Recording", "live_options"]
