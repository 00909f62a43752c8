"""Blink detection on a per-track eye-openness series."""

from __future__ import annotations

import numpy as np


def detect_blinks(t_sec: np.ndarray, ear: np.ndarray, closed_ratio: float = 0.75,
                  max_duration_sec: float = 0.5, min_depth_ratio: float = 0.65) -> np.ndarray:
    """Mark the frames of one face track that are part of a blink.

    The open-eye level is the track's 80th percentile of eye aspect ratio (EAR). A blink is a run of frames
    whose EAR falls below ``closed_ratio`` × that level, lasting at most ``max_duration_sec`` and reaching
    at most ``min_depth_ratio`` × the level at its deepest. Longer closures (eyes shut) are not blinks.

    Args:
        t_sec: (T,) frame times in seconds, increasing.
        ear: (T,) mean EAR of both eyes.

    Returns:
        bool (T,): True on frames inside a blink.
    """
    t_sec = np.asarray(t_sec, np.float64)
    ear = np.asarray(ear, np.float64)
    out = np.zeros(len(ear), bool)
    if len(ear) < 3:
        return out
    level = np.nanpercentile(ear, 80)
    low = ear < closed_ratio * level
    edges = np.flatnonzero(np.diff(np.concatenate([[0], low.astype(np.int8), [0]])))
    for start, stop in zip(edges[::2], edges[1::2], strict=True):  # frames [start, stop)
        if start == 0 or stop == len(ear):
            continue  # run touches the track's ends: onset or offset unseen
        duration = t_sec[stop] - t_sec[start - 1]
        if duration <= max_duration_sec and ear[start:stop].min() <= min_depth_ratio * level:
            out[start:stop] = True
    return out


def blink_events(t_sec: np.ndarray, frame: np.ndarray, blink: np.ndarray) -> list[tuple[int, int, float, float]]:
    """Group blink frames of one track into events.

    Returns:
        list of (onset_frame, offset_frame, onset_t_sec, offset_t_sec): first and last frame of each blink.
    """
    blink = np.asarray(blink, bool)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], blink.astype(np.int8), [0]])))
    return [(int(frame[a]), int(frame[b - 1]), float(t_sec[a]), float(t_sec[b - 1]))
            for a, b in zip(edges[::2], edges[1::2], strict=True)]
