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
