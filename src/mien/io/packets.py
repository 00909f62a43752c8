"""Frame rate and duration of a video from its packets' timestamps, for containers whose header has neither (a
browser's MediaRecorder WebM). :mod:`mien.io.video` falls back to it; the app's upload check uses it directly."""

from __future__ import annotations

import functools
import os

import av

__all__ = ["packet_timing"]


def packet_timing(path: str | os.PathLike) -> tuple[float | None, float | None]:
    """(average frame rate in frames/s, duration in s) of the first video stream from its packets' presentation
    times (demuxed, not decoded), for containers whose header has neither (WebM from a browser's MediaRecorder:
    the stream's "guessed" rate is then its time base, e.g. 1000). (None, None) when it cannot tell.

    Every packet is read once per version of a file: the answer is kept by (resolved path, inode, mtime_ns,
    ctime_ns, size), the 32 most recent, so the passes of one job that open the file again reuse it and a changed file is read again."""
    try:
        st = os.stat(path)
    except OSError:
        return None, None
    return _cached_packet_timing(os.path.realpath(path), (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size))


@functools.lru_cache(maxsize=32)
def _cached_packet_timing(path: str, _version: tuple) -> tuple[float | None, float | None]:
    return _read_packet_timing(path)


def _read_packet_timing(path: str) -> tuple[float | None, float | None]:
    """:func:`packet_timing` without the cache."""
    try:
        with av.open(path) as c:
            s = c.streams.video[0]
            pts = sorted(float(p.pts * p.time_base) for p in c.demux(s) if p.pts is not None and p.time_base)
    except (av.FFmpegError, IndexError, UnicodeDecodeError):
        return None, None
    if len(pts) < 2 or pts[-1] <= pts[0]:
        return None, None
    step = (pts[-1] - pts[0]) / (len(pts) - 1)
    return 1.0 / step, pts[-1] - pts[0] + step
