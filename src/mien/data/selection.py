"""Clip selection: which fixed-length windows of a video become samples.

All windows live on the clip frame grid ``t_k = k / fps`` (k = 0, 1, … from the first video frame), so a
window is a start frame index and a length in grid frames. Modes:

- ``random``: N non-overlapping valid windows chosen with a seeded generator;
- ``all``: every valid window at a fixed stride;
- ``keywords``: a window starting ``offset`` seconds after each keyword in a transcript (or ending ``offset``
  seconds before it when that would run past the end); identical windows are merged;
- ``scored``: valid windows ranked by expression variation and head stability; the best K non-overlapping.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import numpy as np


@dataclass
class Window:
    """One candidate clip window on the clip frame grid.

    Attributes:
        start: first grid frame index.
        length: number of grid frames.
        keyword: the transcript keyword that produced it ("" otherwise).
        score: ranking score in scored mode (NaN otherwise).
    """

    start: int
    length: int
    keyword: str = ""
    score: float = float("nan")


# ------------------------------------------------------------------------------------------ transcripts
@dataclass
class Word:
    """A transcript token with its time span in seconds (from the start of the video)."""

    text: str
    start: float
    end: float


_TS = r"(?:(\d+):)?(\d{1,2}):(\d{2})[.,](\d{1,3})"
_CUE = re.compile(_TS + r"\s*-->\s*" + _TS)
_INLINE = re.compile(r"<" + _TS + r">")
_TAG = re.compile(r"</?[^>]+>")
_TOKEN = re.compile(r"[\w']+", re.UNICODE)


def _ts(h, m, s, ms) -> float:
    return int(h or 0) * 3600 + int(m) * 60 + int(s) + int(ms.ljust(3, "0")) / 1000.0


def _segment_words(text: str, start: float, end: float) -> list[Word]:
    """Words of a segment-level cue, timed by linear interpolation of their character position."""
    text = _TAG.sub("", text).strip()
    toks = list(_TOKEN.finditer(text))
    n = max(len(text), 1)
    span = max(end - start, 0.0)
    return [Word(m.group(0).lower(), start + span * m.start() / n, start + span * m.end() / n) for m in toks]


def _cue_words(text: str, start: float, end: float) -> list[Word]:
    """Words of a WebVTT cue; inline ``<hh:mm:ss.mmm>`` timestamps give word-level times when present."""
    if not _INLINE.search(text):
        return _segment_words(text, start, end)
    words: list[Word] = []
    t = start
    pos = 0
    pieces: list[tuple[float, str]] = []
    for m in _INLINE.finditer(text):
        pieces.append((t, text[pos:m.start()]))
        t = _ts(*m.groups())
        pos = m.end()
    pieces.append((t, text[pos:]))
    for i, (t0, chunk) in enumerate(pieces):
        t1 = pieces[i + 1][0] if i + 1 < len(pieces) else end
        words.extend(_segment_words(chunk, t0, max(t1, t0)))
    return words


def parse_transcript(text: str, fmt: str) -> list[Word]:
    """Parse a transcript into timed words.

    Args:
        text: file content.
        fmt: "vtt", "srt" or "json". JSON is a list of segments ``{"start", "end", "text"}`` (seconds),
            optionally with ``"words": [{"start", "end", "word"|"text"}]`` for word-level times (also accepted:
            ``{"segments": [...]}`` as written by Whisper).

    Returns:
        Words (lower case) in time order; segment-level entries get interpolated word times.

    Raises:
        ValueError: unknown format or malformed JSON.
    """
    fmt = fmt.lower().lstrip(".")
    words: list[Word] = []
    if fmt in ("vtt", "srt"):
        lines = text.replace("\r\n", "\n").split("\n")
        i = 0
        while i < len(lines):
            m = _CUE.search(lines[i])
            if not m:
                i += 1
                continue
            g = m.groups()
            start, end = _ts(*g[:4]), _ts(*g[4:])
            i += 1
            body = []
            while i < len(lines) and lines[i].strip():
                body.append(lines[i])
                i += 1
            words.extend(_cue_words(" ".join(body), start, end))
    elif fmt == "json":
        data = json.loads(text)
        if isinstance(data, dict):
            data = data.get("segments", [])
        if not isinstance(data, list):
            raise ValueError("JSON transcript must be a list of {start, end, text} segments")
        for seg in data:
            if seg.get("words"):
                for w in seg["words"]:
                    tok = str(w.get("word", w.get("text", "")))
                    words.extend(_segment_words(tok, float(w["start"]), float(w["end"])))
            else:
                words.extend(_segment_words(str(seg.get("text", "")), float(seg["start"]), float(seg["end"])))
    else:
        raise ValueError(f"unknown transcript format {fmt!r} (vtt, srt or json)")
    words.sort(key=lambda w: w.start)
    return words


def keyword_windows(words: list[Word], keywords: list[str], clip_frames: int, fps: float, n_frames: int,
                    offset_sec: float) -> list[Window]:
    """Windows for keyword mode.

    A keyword matches a whole word, case-insensitively; a multi-word keyword matches consecutive words.
    The window starts ``offset_sec`` after the keyword's start; if it would run past the end of the video it
    ends ``offset_sec`` before the keyword instead (clamped to the video). Windows with the same start
    frame are merged (first keyword kept).

    Args:
        words: from :func:`parse_transcript`.
        keywords: keywords or phrases.
        clip_frames: window length in grid frames.
        fps: clip frame rate.
        n_frames: number of grid frames in the video.
        offset_sec: seconds between the keyword and the window start.

    Returns:
        Windows sorted by start.
    """
    out: dict[int, Window] = {}
    if n_frames < clip_frames:
        return []
    toks = [w.text for w in words]
    for kw in keywords:
        parts = [p.lower() for p in _TOKEN.findall(kw)]
        if not parts:
            continue
        for i in range(len(toks) - len(parts) + 1):
            if toks[i:i + len(parts)] != parts:
                continue
            t = words[i].start
            start = _frame(t + offset_sec, fps)
            if start + clip_frames > n_frames:
                start = _frame(t - offset_sec - clip_frames / fps, fps)
            start = int(np.clip(start, 0, n_frames - clip_frames))
            out.setdefault(start, Window(start, clip_frames, keyword=kw))
    return [out[k] for k in sorted(out)]


def _frame(t_sec: float, fps: float) -> int:
    """Nearest clip-grid frame of a time (halves round up, robust to float error)."""
    return int(np.floor(t_sec * fps + 0.5 + 1e-6))


# ------------------------------------------------------------------------------------------- grid modes
def tile_windows(n_frames: int, clip_frames: int, stride: int, phase: int = 0) -> list[Window]:
    """Windows of ``clip_frames`` starting at ``phase, phase + stride, …`` that fit in ``n_frames``."""
    if stride < 1:
        raise ValueError(f"stride must be >= 1 frame, got {stride}")
    return [Window(s, clip_frames) for s in range(phase, n_frames - clip_frames + 1, stride)]


def random_windows(valid: list[Window], n: int, rng: np.random.Generator) -> list[Window]:
    """Up to ``n`` of the (already non-overlapping) valid windows, chosen by ``rng``; sorted by start."""
    if len(valid) <= n:
        return list(valid)
    idx = np.sort(rng.choice(len(valid), size=n, replace=False))
    return [valid[i] for i in idx]


def score_windows(windows: list[Window], lm_norm: np.ndarray, angles_deg: np.ndarray, w_expr: float,
                  w_stable: float) -> list[Window]:
    """Score windows by expression variation and head stability (higher is better).

    ``expression = mean over features of their temporal std`` × 100: of crop-normalised landmarks (face size =
    1, rigid head motion removed by the per-frame alignment, i.e. percent of the face size), or of unit-norm
    expression tokens when prepare is given a tokenizer; ``instability =
    mean temporal std of yaw, pitch, roll`` in degrees / 10. ``score = w_expr·expression −
    w_stable·instability``.

    Args:
        windows: candidates.
        lm_norm: (T, ...) expression features of every grid frame: (T, K, 2) aligned, size-normalised
            landmarks or (T, D) expression tokens; NaN where no face.
        angles_deg: (T, 3) head pose angles per grid frame.
        w_expr, w_stable: weights.

    Returns:
        The same windows with ``score`` set.
    """
    for w in windows:
        sl = slice(w.start, w.start + w.length)
        expr = float(np.nanmean(np.nanstd(lm_norm[sl], axis=0))) * 100.0
        unstable = float(np.nanmean(np.nanstd(angles_deg[sl], axis=0))) / 10.0
        w.score = w_expr * expr - w_stable * unstable
    return windows


def top_k_non_overlapping(windows: list[Window], k: int) -> list[Window]:
    """Greedy best-first choice of at most ``k`` non-overlapping windows (ties: earlier first); by start."""
    chosen: list[Window] = []
    for w in sorted(windows, key=lambda w: (-w.score, w.start)):
        if len(chosen) >= k:
            break
        if all(w.start + w.length <= c.start or c.start + c.length <= w.start for c in chosen):
            chosen.append(w)
    return sorted(chosen, key=lambda w: w.start)
