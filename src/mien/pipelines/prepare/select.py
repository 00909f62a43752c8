"""Per-video track analysis (pass 1) and clip-window selection for ``mien prepare``.

:func:`analyse_grid` runs the face mesh on the source frames shown at the clip grid times; candidate windows
(:mod:`mien.data.selection`) are checked by :func:`window_reason` and chosen by :func:`select_windows`.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mien.data import store
from mien.data.selection import (
    Window,
    keyword_windows,
    random_windows,
    score_windows,
    tile_windows,
    top_k_non_overlapping,
)
from mien.data.shards import file_sha256
from mien.pipelines.prepare.options import PrepareOptions

TRANSCRIPT_SUFFIXES = (".json", ".vtt", ".srt")
FRAME_CACHE_BYTES = 256 << 20
"""Pass 1 keeps the decoded frames of a video up to this many bytes, so pass 2 need not decode it again."""

@dataclass
class Track:
    """Per clip-grid-frame face data of one video (n = number of clip-grid frames ``t_k = k / fps``).

    Attributes:
        n: number of grid frames.
        src_index: (n,) int64 source frame index shown at grid time k (nearest previous presentation time).
        src_t: (n,) float64 that frame's presentation time (s).
        row: (n,) int64 row of the chosen face (largest) in ``result``, -1 when no face.
        nfaces: (n,) int64 faces found in that frame.
        result: the :class:`~mien.results.AnalysisResult` of the analysed source frames.
    """

    n: int
    src_index: np.ndarray  # (n,) source frame index shown at grid time
    src_t: np.ndarray  # (n,) its presentation time
    row: np.ndarray  # (n,) row in the analysis result of the chosen face, -1 none
    nfaces: np.ndarray  # (n,)
    result: object  # AnalysisResult


def analyse_grid(path: str, opts: PrepareOptions) -> tuple[Track, dict]:
    """Pass 1 over a local video: face mesh + IoU tracks on the source frames shown at the clip grid times.

    Returns:
        (:class:`Track`, {"models": face-mesh model files with SHA-256, "info": VideoInfo,
        "corrupt_frames": int, "frames": {source frame index: RGB uint8 (H, W, 3)} of every frame shown at a
        grid time, or None when they exceed :data:`FRAME_CACHE_BYTES` (pass 2 then decodes again)}).

    Raises:
        InputError: the video cannot be read.
    """
    from mien.io.video import Frame, VideoSource
    from mien.pipelines.analyze import AnalyzeOptions, FrameAnalyzer

    src = VideoSource(path)
    info = src.info
    # plain IoU tracks and landmarks: no neural face models
    aopts = AnalyzeOptions(max_faces=opts.max_faces, detector=opts.detector, max_side=opts.max_side,
                           min_detection_confidence=min(0.5, opts.min_confidence), emotion=False, identity=False,
                           tokenizer=opts.tokenizer if opts.mode == "scored" else None)
    fa = FrameAnalyzer(info.width, info.height, aopts)
    dt = 1.0 / opts.fps
    src_dt = 1.0 / (info.fps or opts.fps)
    grid_idx: list[int] = []
    grid_t: list[float] = []
    prev: Frame | None = None
    k = 0
    cache: dict[int, np.ndarray] | None = {}
    cached_bytes = 0
    try:
        def emit(frame: Frame, until: float) -> None:
            """Show ``frame`` at every grid time before ``until``; analyse it once if it is shown at all."""
            nonlocal k, cache, cached_bytes
            first = k
            while k * dt < until - 1e-6:
                grid_idx.append(frame.index)
                grid_t.append(frame.t_sec)
                k += 1
            if k > first:
                fa.process(frame)
                if cache is not None:  # keep shown frames for pass 2 while they fit the budget
                    cached_bytes += frame.image.nbytes
                    cache = None if cached_bytes > FRAME_CACHE_BYTES else cache
                    if cache is not None:
                        cache[frame.index] = frame.image

        for fr in src:
            if prev is not None:
                emit(prev, fr.t_sec)
            prev = fr
        if prev is not None:
            emit(prev, prev.t_sec + src_dt)
        res = fa.result({"source": path, "width": info.width, "height": info.height, "fps": info.fps,
                         "corrupt_frames": src.corrupt_frames})
    finally:
        fa.close()
    models = mesh_models(fa.mesh)
    n = len(grid_idx)
    src_index = np.array(grid_idx, np.int64)
    rows_by_frame: dict[int, list[int]] = {}
    for i, f in enumerate(res.frame.tolist()):
        rows_by_frame.setdefault(f, []).append(i)
    row = np.full(n, -1, np.int64)
    nfaces = np.zeros(n, np.int64)
    for j, f in enumerate(grid_idx):
        rs = rows_by_frame.get(f, [])
        nfaces[j] = len(rs)
        if rs:
            areas = [(res.bbox[r, 2] - res.bbox[r, 0]) * (res.bbox[r, 3] - res.bbox[r, 1]) for r in rs]
            row[j] = rs[int(np.argmax(areas))]
    track = Track(n, src_index, np.array(grid_t, np.float64), row, nfaces, res)
    return track, {"models": models, "info": info, "corrupt_frames": src.corrupt_frames, "frames": cache}


_SHA: dict[str, str] = {}


def mesh_models(mesh) -> dict:
    """Name, file and SHA-256 of the face-mesh model files (recorded in the manifest)."""
    out = {}
    for k, p in getattr(mesh, "model_files", {}).items():
        if p not in _SHA:
            _SHA[p] = file_sha256(p)
        out[k] = {"name": getattr(mesh, "name", ""), "file": os.path.basename(p), "sha256": _SHA[p]}
    return out


def window_reason(w: Window, tr: Track, opts: PrepareOptions) -> str | None:
    """Why a window (grid frames ``w.start … w.start + w.length``) is rejected: "past_end", "no_face",
    "multiple_faces", "track_break", "small_face", "low_confidence"; None when it is kept."""
    sl = slice(w.start, w.start + w.length)
    if w.start < 0 or w.start + w.length > tr.n:
        return "past_end"
    rows = tr.row[sl]
    if (rows < 0).any():
        return "no_face"
    if opts.track_policy == "single" and (tr.nfaces[sl] > 1).any():
        return "multiple_faces"
    res = tr.result
    if len(np.unique(res.face_id[rows])) > 1:
        return "track_break"
    b = res.bbox[rows]
    size = np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])
    if size.min() < opts.min_face:
        return "small_face"
    conf = res.confidence[rows]
    if np.nan_to_num(conf, nan=0.0).min() < opts.min_confidence:
        return "low_confidence"
    return None


def select_windows(tr: Track, opts: PrepareOptions, vkey: str, words) -> tuple[list[Window], dict, int]:
    """Candidate windows of ``opts.mode``, checked with :func:`window_reason` and chosen.

    Args:
        tr: the video's :class:`Track`.
        vkey: video key (seeds random mode together with ``opts.seed``).
        words: keywords mode: the transcript's timed words (:func:`mien.data.selection.parse_transcript`).

    Returns:
        (chosen windows, {rejection reason: count}, number of candidate windows).
    """
    L = opts.clip_frames
    rejected: dict[str, int] = {}

    def valid(cands: list[Window]) -> list[Window]:
        out = []
        for w in cands:
            r = window_reason(w, tr, opts)
            if r is None:
                out.append(w)
            else:
                rejected[r] = rejected.get(r, 0) + 1
        return out

    if tr.n < L:
        return [], {"video_shorter_than_clip": 1}, 1
    if opts.mode == "random":
        rng = np.random.default_rng([opts.seed, int(hashlib.sha1(vkey.encode()).hexdigest()[:8], 16)])
        phase = int(rng.integers(0, min(L, tr.n - L + 1)))
        cands = tile_windows(tr.n, L, L, phase)
        chosen = random_windows(valid(cands), opts.clips_per_video, rng)
    elif opts.mode == "all":
        stride = max(1, int(round((opts.stride_seconds or opts.clip_seconds) * opts.fps)))
        cands = tile_windows(tr.n, L, stride)
        chosen = valid(cands)
    elif opts.mode == "keywords":
        cands = keyword_windows(words, list(opts.keywords), L, opts.fps, tr.n, opts.offset_seconds)
        chosen = valid(cands)
    else:  # scored
        from mien.face.geometry import frontal_landmarks

        stride = max(1, int(round((opts.stride_seconds or opts.clip_seconds / 2) * opts.fps)))
        cands = tile_windows(tr.n, L, stride)
        ok = valid(cands)
        res = tr.result
        lm_norm = np.full((tr.n, res.landmarks.shape[1], 2), np.nan, np.float32)
        ang = np.full((tr.n, 3), np.nan, np.float32)
        has = tr.row >= 0
        if has.any():
            lm = res.landmarks[tr.row[has]]
            # landmarks in the canonical head frame (3-D Umeyama, the one similarity estimator): head turns
            # out of the image plane no longer count as expression variation
            lm_norm[has] = frontal_landmarks(lm)
            r = tr.row[has]
            ang[has] = np.stack([res.yaw_deg[r], res.pitch_deg[r], res.roll_deg[r]], -1)
        expression = lm_norm
        if "expression_token" in res.extra:  # --tokenizer: variation of the expression tokens instead
            tok = res.extra["expression_token"]
            expression = np.full((tr.n, tok.shape[1]), np.nan, np.float32)
            expression[has] = tok[tr.row[has]]
        chosen = top_k_non_overlapping(score_windows(ok, expression, ang, opts.w_expression, opts.w_stability),
                                       opts.top_k)
    return chosen, rejected, len(cands)


def find_transcript(opts: PrepareOptions, uri: str) -> tuple[str, str] | None:
    """(text, format) of the transcript of ``uri`` in ``opts.transcripts``, or None."""
    fs, base = store.get_fs(opts.transcripts)
    stem = Path(uri.split("://")[-1]).stem
    for suf in TRANSCRIPT_SUFFIXES:
        p = store.join(base, stem + suf)
        if fs.exists(p):
            with fs.open(p, "r", encoding="utf-8") as f:
                return f.read(), suf[1:]
    return None
