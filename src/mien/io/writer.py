"""H.264 MP4 writing with PyAV."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


class VideoWriter:
    """Write RGB uint8 frames (H, W, 3) to an H.264 (yuv420p) MP4 at a constant frame rate.

    Frames are stored as given, upright, with no display matrix: sources yield displayed-orientation frames
    (:mod:`mien.io.video` applies a clip's display rotation), so an overlay of a portrait phone clip is a
    portrait video that every player shows the same way.

    Odd frame sizes are padded by one pixel (H.264 4:2:0 needs even sizes). Use as a context manager;
    the file is complete when the writer is closed. For atomic output wrap it in
    :func:`mien.io.atomic.atomic_output`.

    Args:
        path: output file (.mp4).
        fps: frame rate in frames/s.
        crf: x264 constant rate factor (lower = better quality, larger files).
    """

    def __init__(self, path: str | os.PathLike, fps: float, crf: int = 23):
        self.path = Path(path)
        self._container = av.open(str(self.path), mode="w", format="mp4")
        self._rate = Fraction(fps).limit_denominator(1001)
        self._crf = crf
        self._stream = None
        self.frames_written = 0

    def write(self, image: np.ndarray) -> None:
        """Append one RGB uint8 frame; all frames must have the size of the first."""
        h, w = image.shape[:2]
        if self._stream is None:
            self._stream = self._container.add_stream("libx264", rate=self._rate)
            self._stream.width, self._stream.height = w + w % 2, h + h % 2
            self._stream.pix_fmt = "yuv420p"
            self._stream.options = {"crf": str(self._crf), "preset": "veryfast"}
        if w % 2 or h % 2:
            image = np.pad(image, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames_written += 1

    def close(self) -> None:
        if self._container is None:
            return
        if self._stream is not None:
            for packet in self._stream.encode():
                self._container.mux(packet)
        self._container.close()
        self._container = None

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_video(frames, path: str | os.PathLike, fps: float, *, crf: int = 23,
                audio_from: str | os.PathLike | None = None, audio_start: float | None = None,
                keep_on_interrupt: bool = False) -> tuple[int, bool]:
    """Write an iterable of RGB uint8 (H, W, 3) frames to an H.264 MP4 atomically, with the audio of another file
    muxed in (:func:`mien.io.mux.mux_audio`) over the video's duration.

    Args:
        frames: the frames (streamed; all of one size). path: output ``.mp4``. fps: frame rate.
        crf: x264 quality (lower = better). audio_from: media file whose audio is added (None, or a file without
            audio: a silent video). audio_start: time (s) of ``audio_from`` that lines up with the first frame.
        keep_on_interrupt: a KeyboardInterrupt while iterating ``frames`` ends the video and keeps it (a webcam
            recording) instead of discarding it.

    Returns:
        (frames written, whether audio was added). An exception raised by ``frames`` leaves no file behind.

    Raises:
        ValueError: ``frames`` is empty (nothing is written).
    """
    from mien.io.atomic import atomic_output
    from mien.io.mux import mux_audio

    with atomic_output(path) as tmp:
        silent = tmp.with_name(tmp.stem + ".silent.mp4")
        try:
            with VideoWriter(silent, fps, crf=crf) as w:
                try:
                    for img in frames:
                        w.write(img)
                except KeyboardInterrupt:
                    if not keep_on_interrupt:
                        raise
            n = w.frames_written
            if n == 0:
                raise ValueError(f"{os.fspath(path)}: no frame to write")
            audio = bool(audio_from is not None and mux_audio(silent, audio_from, tmp, audio_start, n / fps))
            if not audio:
                os.replace(silent, tmp)
        finally:
            if silent.exists():
                silent.unlink()
    return n, audio
