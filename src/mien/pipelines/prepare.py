"""Dataset preparation: videos → selected clips → aligned face crops + features → WebDataset shards.

Per source video (one unit of work, run in a worker process):

1. pass 1 decodes the video and runs the face mesh (:class:`~mien.pipelines.analyze.FrameAnalyzer`) on the
   source frames shown at the clip grid times ``t_k = k / fps`` (nearest previous presentation time, so
   clips are resampled to ``fps`` by presentation time);
2. candidate windows (see :mod:`mien.data.selection`) are checked — one tracked face (or the largest) in
   every frame, face size ≥ ``min_face`` px, detection confidence ≥ ``min_confidence`` — and every rejected
   window's reason is counted;
3. pass 2 decodes again and warps the frames of the chosen windows into square crops (similarity from eye
   and mouth centres, temporally smoothed: :mod:`mien.face.align`); audio is cut, encoded and featurised;
   with ``au_labels`` every clip frame gets the FACS Action Unit labels of the source frame it shows
   (:func:`read_au_labels`, :meth:`AULabels.lookup`) as ``au.npy``;
4. samples go to ``shards/<video key>-NNNN.tar`` (temporary name, renamed when complete), then the marker
   ``done/<video key>.json``. A restarted run skips videos with a marker and redoes the others from scratch,
   so a killed run ends with exactly the samples of an uninterrupted one.

``manifest.json``, ``index.parquet`` and ``report.json`` are rebuilt from the markers at the end.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mien.data import store
from mien.data.facs import au_column_name
from mien.data.selection import (
    Window,
    keyword_windows,
    parse_transcript,
    random_windows,
    score_windows,
    tile_windows,
    top_k_non_overlapping,
)
from mien.errors import InputError

MODES = ("random", "all", "keywords", "scored")
TRACK_POLICIES = ("single", "largest")
TRANSCRIPT_SUFFIXES = (".json", ".vtt", ".srt")


@dataclass
class PrepareOptions:
    """Options of :func:`prepare` (``mien prepare`` flags map one to one).

    Attributes:
        clip_seconds: clip length in seconds (T = round(clip_seconds · fps) frames).
        fps: clip frame rate; source frames are picked by presentation time (nearest previous).
        crop_size: side of the square face crop in pixels.
        margin: extra crop border as a fraction of the default half size (FFHQ-style crop when 0).
        smooth_frames: Gaussian σ (clip frames) for smoothing the crop transform over time (0: off).
        mode: "random", "all", "keywords" or "scored".
        clips_per_video: random mode: clips per video.
        stride_seconds: all/scored modes: distance between window starts (default: clip_seconds for "all",
            clip_seconds / 2 for "scored").
        top_k: scored mode: clips kept per video.
        w_expression, w_stability: scored mode weights (see :func:`mien.data.selection.score_windows`).
        tokenizer: scored mode: an exported expression tokenizer folder (``mien export tokenizer``); expression
            variation is then measured on its per-frame expression tokens instead of aligned landmarks.
        seed: random mode seed (combined with the video key, so each video's choice is stable).
        transcripts: keywords mode: folder or URL holding ``<video stem>.json|.vtt|.srt``.
        keywords: keywords mode: words or phrases.
        offset_seconds: keywords mode: window start after the keyword (or end before it near the end).
        track_policy: "single" (exactly one face in every frame) or "largest" (the largest face's track).
        max_faces: faces tracked per frame for the policy check.
        min_face: smallest face (longer side of the landmark box, source px) kept.
        min_confidence: smallest face-detector score kept.
        subjects: CSV with columns ``video,subject`` (video = URI, file name or stem); default one subject
            per source video.
        audio: extract audio and audio features when the source has audio.
        egemaps: add eGeMAPS functionals (needs the optional ``opensmile`` package).
        crf: x264 quality of the crop videos (lower = better).
        shard_samples: most samples per shard file.
        max_side, detector: face-mesh options (see :class:`~mien.pipelines.analyze.AnalyzeOptions`).
        au_labels: per-frame FACS Action Unit labels (DISFA style), a CSV or a folder of per-video CSVs (see
            :func:`read_au_labels`); clips of labelled videos then carry ``au.npy`` (T, A) float32.
    """

    clip_seconds: float = 2.0
    fps: float = 25.0
    crop_size: int = 256
    margin: float = 0.0
    smooth_frames: float = 2.0
    mode: str = "random"
    clips_per_video: int = 4
    stride_seconds: float | None = None
    top_k: int = 4
    w_expression: float = 1.0
    w_stability: float = 1.0
    tokenizer: str | None = None
    seed: int = 0
    transcripts: str | None = None
    keywords: tuple[str, ...] = ()
    offset_seconds: float = 1.0
    track_policy: str = "single"
    max_faces: int = 2
    min_face: float = 64.0
    min_confidence: float = 0.5
    subjects: str | None = None
    audio: bool = True
    egemaps: bool = False
    crf: int = 18
    shard_samples: int = 256
    max_side: int = 800
    detector: str = "short"
    au_labels: str | None = None

    def __post_init__(self) -> None:
        self.keywords = tuple(self.keywords)
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.track_policy not in TRACK_POLICIES:
            raise ValueError(f"track_policy must be single or largest, got {self.track_policy!r}")
        if self.clip_seconds <= 0 or self.fps <= 0:
            raise ValueError("clip_seconds and fps must be > 0")
        if self.crop_size < 16:
            raise ValueError(f"crop_size must be >= 16, got {self.crop_size}")
        if self.mode == "keywords" and (not self.keywords or not self.transcripts):
            raise ValueError("keywords mode needs --transcripts and --keywords")
        if self.clip_frames < 1:
            raise ValueError("clip_seconds * fps must be at least one frame")

    @property
    def clip_frames(self) -> int:
        return int(round(self.clip_seconds * self.fps))

    def settings(self) -> dict:
        """The options that determine the content of a dataset (compared on resume; ``au_labels`` only when
        set, so datasets prepared before that option existed still resume)."""
        out = dataclasses.asdict(self) | {"keywords": list(self.keywords)}
        if out["au_labels"] is None:
            del out["au_labels"]
        return out


@dataclass
class PrepareReport:
    """Outcome of :func:`prepare`.

    Attributes:
        ok: per prepared video: input, video_key, samples, shards, rejected (reason → count), seconds.
        failed: per skipped video: input, reason (corrupt, unreadable, no face, no keyword …).
        resumed: videos already done by an earlier run (not redone).
        samples: total samples in the dataset.
        rejected: rejected windows per reason, over all videos.
        source_seconds, wall_seconds: video duration handled by this run and its wall-clock time.
        no_au_labels: with ``au_labels``: prepared videos that have no labels (their clips carry no ``au.npy``).
    """

    ok: list[dict] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)
    resumed: int = 0
    samples: int = 0
    rejected: dict = field(default_factory=dict)
    source_seconds: float = 0.0
    wall_seconds: float = 0.0
    no_au_labels: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------------ per video
@dataclass
class _Track:
    """Per clip-grid-frame face data of one video (n = number of grid frames)."""

    n: int
    src_index: np.ndarray  # (n,) source frame index shown at grid time
    src_t: np.ndarray  # (n,) its presentation time
    row: np.ndarray  # (n,) row in the analysis result of the chosen face, -1 none
    nfaces: np.ndarray  # (n,)
    result: object  # AnalysisResult


def _analyse_grid(path: str, opts: PrepareOptions) -> tuple[_Track, object]:
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
    try:
        def emit(frame: Frame, until: float) -> None:
            """Show ``frame`` at every grid time before ``until``; analyse it once if it is shown at all."""
            nonlocal k
            first = k
            while k * dt < until - 1e-6:
                grid_idx.append(frame.index)
                grid_t.append(frame.t_sec)
                k += 1
            if k > first:
                fa.process(frame)

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
    models = _mesh_models(fa.mesh)
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
    track = _Track(n, src_index, np.array(grid_t, np.float64), row, nfaces, res)
    return track, {"models": models, "info": info, "corrupt_frames": src.corrupt_frames}


_SHA: dict[str, str] = {}


def _mesh_models(mesh) -> dict:
    """Name, file and SHA-256 of the face-mesh model files (recorded in the manifest)."""
    import hashlib

    out = {}
    for k, p in getattr(mesh, "model_files", {}).items():
        if p not in _SHA:
            h = hashlib.sha256()
            with open(p, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            _SHA[p] = h.hexdigest()
        out[k] = {"name": getattr(mesh, "name", ""), "file": os.path.basename(p), "sha256": _SHA[p]}
    return out


def _window_reason(w: Window, tr: _Track, opts: PrepareOptions) -> str | None:
    """Why a window is rejected (None: kept)."""
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


def _select(tr: _Track, opts: PrepareOptions, vkey: str, words) -> tuple[list[Window], dict, int]:
    """Chosen windows, rejected-reason counts and number of candidates."""
    L = opts.clip_frames
    rejected: dict[str, int] = {}

    def valid(cands: list[Window]) -> list[Window]:
        out = []
        for w in cands:
            r = _window_reason(w, tr, opts)
            if r is None:
                out.append(w)
            else:
                rejected[r] = rejected.get(r, 0) + 1
        return out

    if tr.n < L:
        return [], {"video_shorter_than_clip": 1}, 1
    if opts.mode == "random":
        import hashlib

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
        from mien.face.align import params_to_affine, similarity_params, transform_landmarks

        stride = max(1, int(round((opts.stride_seconds or opts.clip_seconds / 2) * opts.fps)))
        cands = tile_windows(tr.n, L, stride)
        ok = valid(cands)
        res = tr.result
        lm_norm = np.full((tr.n, res.landmarks.shape[1], 2), np.nan, np.float32)
        ang = np.full((tr.n, 3), np.nan, np.float32)
        has = tr.row >= 0
        if has.any():
            lm = res.landmarks[tr.row[has]]
            A = params_to_affine(similarity_params(lm), 1)
            lm_norm[has] = transform_landmarks(lm, A)[..., :2]
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


def _encode_mp4(frames: np.ndarray, fps: float, crf: int) -> bytes:
    from mien.io.writer import VideoWriter

    with tempfile.TemporaryDirectory(prefix="mien-clip-") as d:
        p = os.path.join(d, "clip.mp4")
        with VideoWriter(p, fps, crf=crf) as w:
            for im in frames:
                w.write(im)
        return Path(p).read_bytes()


class _ShardGroup:
    """Writes one video's samples to ``shards/<vkey>-NNNN.tar`` parts, each atomically."""

    def __init__(self, fs, root: str, vkey: str, max_samples: int):
        self.fs, self.root, self.vkey, self.max = fs, root, vkey, max_samples
        self.parts: list[dict] = []
        self._ctx = None
        self._writer = None
        self._count = 0

    def _open(self) -> None:
        import webdataset as wds

        name = f"{self.vkey}-{len(self.parts):04d}.tar"
        self._name = name
        self._ctx = store.atomic_target(self.fs, store.join(self.root, "shards", name))
        self._tmp = self._ctx.__enter__()
        self._writer = wds.TarWriter(self._tmp, encoder=False, mtime=0.0)
        self._count = 0

    def write(self, sample: dict) -> str:
        if self._writer is None:
            self._open()
        self._writer.write(sample)
        self._count += 1
        name = self._name
        if self._count >= self.max:
            self._close()
        return name

    def _close(self) -> None:
        if self._writer is None:
            return
        self._writer.close()
        size = os.path.getsize(self._tmp)
        self._ctx.__exit__(None, None, None)
        self.parts.append({"name": self._name, "samples": self._count, "bytes": size, "video": self.vkey})
        self._writer = self._ctx = None

    def close(self) -> list[dict]:
        self._close()
        return self.parts

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._ctx.__exit__(RuntimeError, RuntimeError("aborted"), None)
            self._writer = self._ctx = None


def _find_transcript(opts: PrepareOptions, uri: str) -> tuple[str, str] | None:
    """(text, format) of the transcript of ``uri`` in ``opts.transcripts``, or None."""
    fs, base = store.get_fs(opts.transcripts)
    stem = Path(uri.split("://")[-1]).stem
    for suf in TRANSCRIPT_SUFFIXES:
        p = store.join(base, stem + suf)
        if fs.exists(p):
            with fs.open(p, "r", encoding="utf-8") as f:
                return f.read(), suf[1:]
    return None


def process_video(uri: str, vkey: str, subject: str, subject_id: int, opts: PrepareOptions, out: str,
                  au: AULabels | None = None) -> dict:
    """Prepare one source video into ``out`` (shards + done marker). Never raises for a bad input.

    Args:
        au: this video's AU labels (every clip then gets ``au.npy``), or None.

    Returns:
        The done-marker dict: status "ok" or "failed" (with reason), samples (index rows), shards,
        rejected (reason → count), source_seconds, seconds, has_au, au_names.
    """
    fs, root = store.get_fs(out)
    t0 = time.perf_counter()
    marker = {"input": uri, "video_key": vkey, "subject": subject, "subject_id": subject_id, "status": "ok",
              "reason": "", "samples": [], "shards": [], "rejected": {}, "candidates": 0, "source_seconds": 0.0,
              "has_audio": False, "models": {}, "has_au": au is not None, "au_names": list(au.names) if au else []}
    group = _ShardGroup(fs, root, vkey, opts.shard_samples)
    try:
        words = None
        if opts.mode == "keywords":
            tx = _find_transcript(opts, uri)
            if tx is None:
                raise InputError(uri, f"no transcript <stem>.json/.vtt/.srt in {opts.transcripts}")
            try:
                words = parse_transcript(*tx)
            except (ValueError, KeyError, TypeError) as e:
                raise InputError(uri, f"unreadable transcript ({e})") from None
        with store.local_copy(uri) as path:
            track, extra = _analyse_grid(path, opts)
            marker["models"] = extra["models"]
            marker["source_seconds"] = round(track.n / opts.fps, 3)
            if track.n == 0 or len(track.result) == 0:
                raise InputError(uri, "no face found")
            chosen, rejected, ncand = _select(track, opts, vkey, words)
            marker["rejected"], marker["candidates"] = rejected, ncand
            if not chosen:
                why = ", ".join(f"{k}: {v}" for k, v in sorted(rejected.items())) or "no candidate window"
                if opts.mode == "keywords" and ncand == 0:
                    why = "no keyword in the transcript"
                raise InputError(uri, f"no usable clip ({why})")
            y = None
            if opts.audio:
                from mien.data.audio import load_audio

                y = load_audio(path)
            marker["has_audio"] = y is not None
            au_tol = 0.5 / (getattr(extra["info"], "fps", None) or opts.fps)
            _write_clips(path, uri, vkey, subject, subject_id, track, chosen, y, opts, group, marker, au, au_tol)
        marker["shards"] = group.close()
    except InputError as e:
        group.abort()
        marker.update(status="failed", reason=e.reason, samples=[], shards=[])
    except Exception as e:  # never fatal for the batch: report it
        group.abort()
        marker.update(status="failed", reason=f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300],
                      samples=[], shards=[])
    marker["seconds"] = round(time.perf_counter() - t0, 3)
    store.write_json(fs, store.join(root, "done", f"{vkey}.json"), marker)
    return marker


def _write_clips(path, uri, vkey, subject, subject_id, tr: _Track, chosen: list[Window], y, opts, group, marker,
                 au: AULabels | None = None, au_tol: float = 0.02):
    from mien.data import audio as A
    from mien.data.shards import encode_sample
    from mien.data.store import SCHEMA_VERSION
    from mien.face.align import (
        params_to_affine,
        similarity_params,
        smooth_params,
        transform_landmarks,
        warp_crop,
    )
    from mien.io.video import VideoSource

    res = tr.result
    S = opts.crop_size
    clips = []
    need: dict[int, list[tuple[int, int]]] = {}
    for ci, w in enumerate(chosen):
        rows = tr.row[w.start:w.start + w.length]
        params = smooth_params(similarity_params(res.landmarks[rows], opts.margin), opts.smooth_frames)
        aff = params_to_affine(params, S)
        clips.append({"w": w, "rows": rows, "aff": aff, "frames": np.zeros((w.length, S, S, 3), np.uint8),
                      "left": w.length, "last": int(tr.src_index[w.start + w.length - 1])})
        for j in range(w.length):
            need.setdefault(int(tr.src_index[w.start + j]), []).append((ci, j))
    last_needed = max(need)
    done = [False] * len(clips)

    def finish(ci: int) -> None:
        c = clips[ci]
        w, rows, aff = c["w"], c["rows"], c["aff"]
        T = w.length
        start_sec = w.start / opts.fps
        key = f"{vkey}_{w.start:06d}"
        meta = {
            "schema_version": SCHEMA_VERSION, "key": key, "source": uri, "video_key": vkey, "subject": subject,
            "subject_id": subject_id, "start_sec": round(start_sec, 6), "end_sec": round((w.start + T) / opts.fps, 6),
            "fps": opts.fps, "frames": T, "crop_size": S,
            "crop": {"method": "similarity(eye centres, mouth centre), FFHQ-style", "margin": opts.margin,
                     "smooth_frames": opts.smooth_frames, "affine": "affine.npy: source px -> crop px"},
            "has_audio": y is not None, "audio_sample_rate": A.SAMPLE_RATE if y is not None else None,
            "mode": opts.mode, "keyword": w.keyword, "score": None if np.isnan(w.score) else float(w.score),
            "face_id": int(res.face_id[rows[0]]),
            "has_au": au is not None,
        }
        sample = {
            "__key__": key,
            "mp4": _encode_mp4(c["frames"], opts.fps, opts.crf),
            "affine.npy": aff.astype(np.float32),
            "landmarks.npy": transform_landmarks(res.landmarks[rows], aff),
            "pose.npy": np.stack([res.yaw_deg[rows], res.pitch_deg[rows], res.roll_deg[rows],
                                  res.tx_mm[rows], res.ty_mm[rows], res.tz_mm[rows]], -1).astype(np.float32),
            "openness.npy": np.stack([res.ear_left[rows], res.ear_right[rows], res.mouth_open[rows]],
                                     -1).astype(np.float32),
            "times.npy": np.stack([(w.start + np.arange(T)) / opts.fps, tr.src_t[w.start:w.start + T]], -1),
            "json": meta,
        }
        if y is not None:
            ya = A.clip_audio(y, start_sec, T, opts.fps)
            sample["flac"] = A.flac_bytes(ya)
            sample["logmel.npy"], sample["mfcc.npy"] = A.frame_features(ya, T, opts.fps)
            if opts.egemaps:
                sample["egemaps.npy"] = A.egemaps(ya)
        if au is not None:
            sl = slice(w.start, w.start + T)
            sample["au.npy"] = au.lookup(tr.src_index[sl], tr.src_t[sl], au_tol)
            meta["au_names"] = list(au.names)
            meta["au_coded_frames"] = int(np.isfinite(sample["au.npy"]).any(1).sum())
        shard = group.write(encode_sample(sample))
        marker["samples"].append({
            "key": key, "shard": shard, "source": uri, "video_key": vkey, "subject": subject,
            "subject_id": subject_id, "start_sec": meta["start_sec"], "end_sec": meta["end_sec"], "fps": opts.fps,
            "frames": T, "has_audio": y is not None, "mode": opts.mode, "keyword": w.keyword,
            "score": meta["score"], "crop_size": S, "has_au": au is not None})
        c["frames"] = None
        done[ci] = True

    for fr in VideoSource(path):
        for ci, j in need.get(fr.index, ()):
            c = clips[ci]
            c["frames"][j] = warp_crop(fr.image, c["aff"][j], S)
            c["left"] -= 1
        for ci, c in enumerate(clips):
            if not done[ci] and c["last"] <= fr.index:
                if c["left"] != 0:
                    raise RuntimeError(f"clip {ci}: {c['left']} frames missing in the second decoding pass")
                finish(ci)
        if fr.index >= last_needed:
            break
    if not all(done):
        raise RuntimeError("second decoding pass ended early")


# ---------------------------------------------------------------------------------------------- batch
def _worker_init() -> None:
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        import cv2

        cv2.setNumThreads(1)  # one video per process; no oversubscription
    except ImportError:
        pass


def _task(args):
    return process_video(*args)


def read_subjects(path: str) -> dict[str, str]:
    """``video,subject`` CSV → {video: subject}; video may be a URI, file name or stem."""
    fs, p = store.get_fs(path)
    with fs.open(p, "r", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows or "video" not in rows[0] or "subject" not in rows[0]:
        raise InputError(path, "subjects CSV needs a header with columns video,subject")
    return {r["video"].strip(): r["subject"].strip() for r in rows}


def assign_subjects(sources: list[str], mapping: dict[str, str] | None) -> dict[str, tuple[str, int]]:
    """{source: (subject name, subject id)}; ids enumerate the sorted subject names (stable, no hash())."""
    names = {}
    for s in sources:
        name = None
        if mapping:
            base = s.split("://")[-1]
            for cand in (s, base, os.path.basename(base), Path(base).stem):
                if cand in mapping:
                    name = mapping[cand]
                    break
        names[s] = name if name is not None else Path(s.split("://")[-1]).stem
    ids = {n: i for i, n in enumerate(sorted(set(names.values())))}
    return {s: (n, ids[n]) for s, n in names.items()}


# ------------------------------------------------------------------------------------------- AU labels
AU_NOT_CODED = 9.0
"""DISFA's "not coded" value (read as NaN, like a blank or NaN cell)."""
AU_MAX = 5.0


def _au_sort_key(name: str) -> tuple[int, str]:
    return int(re.match(r"AU(\d+)", name).group(1)), name


@dataclass
class AULabels:
    """Per-frame FACS Action Unit labels of one source video (one table of :func:`read_au_labels`).

    Attributes:
        names: A FACS names (``AU01``, ``AU02``, …; sided ``AU12L``), shared by every video of a labels source.
        frame: (N,) int64 0-based source frame indices, sorted (when labelled by ``frame``), else None.
        time_sec: (N,) float64 presentation times in seconds, sorted (when labelled by ``time_sec``), else None.
        values: (N, A) float32 FACS intensities 0–5 (or 0/1 occurrence) with NaN = not coded.
        source: the CSV the rows came from.
    """

    names: list[str]
    frame: np.ndarray | None
    time_sec: np.ndarray | None
    values: np.ndarray
    source: str

    def lookup(self, src_index: np.ndarray, src_t: np.ndarray, tolerance: float) -> np.ndarray:
        """Labels of the source frames shown by clip frames.

        Args:
            src_index: (T,) int source frame indices shown (decoding = presentation order, 0-based).
            src_t: (T,) float their presentation times (s).
            tolerance: ``time_sec`` labels: largest |label time − frame time| accepted (s); half a source frame.

        Returns:
            (T, A) float32 FACS values, NaN where the frame has no label row (or the AU is not coded).
        """
        out = np.full((len(src_index), len(self.names)), np.nan, np.float32)
        if not len(self.values):
            return out
        if self.frame is not None:
            pos = np.clip(np.searchsorted(self.frame, src_index), 0, len(self.frame) - 1)
            ok = self.frame[pos] == np.asarray(src_index)
        else:
            t = np.asarray(src_t, np.float64)
            right = np.clip(np.searchsorted(self.time_sec, t), 0, len(self.time_sec) - 1)
            left = np.clip(right - 1, 0, len(self.time_sec) - 1)
            pos = np.where(np.abs(self.time_sec[left] - t) <= np.abs(self.time_sec[right] - t), left, right)
            ok = np.abs(self.time_sec[pos] - t) <= tolerance + 1e-6
        out[ok] = self.values[pos[ok]]
        return out


def _read_label_csv(fs, path: str, by_folder: bool) -> tuple[dict[str, dict], list[str], bytes]:
    """One labels CSV → ({video id: {"rows": [(frame | time, {name: value})], "kind"}}, AU names, raw bytes)."""
    import io

    with fs.open(path, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(path, "AU labels CSV is not UTF-8 text") from None
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if not header:
        raise InputError(path, "AU labels CSV is empty (expected a header with video, frame|time_sec, AU1, …)")
    header = [h.strip() for h in header]
    lower = [h.lower() for h in header]
    cols = {}
    for i, h in enumerate(header):
        n = au_column_name(h)
        if n is not None:
            if n in cols:
                raise InputError(path, f"AU labels CSV has two columns for {n} ({header[cols[n]]}, {h})")
            cols[n] = i
    if not cols:
        raise InputError(path, "AU labels CSV has no AU column (AU1, AU01, AU12L, …)")
    if "frame" in lower:
        kind, kcol = "frame", lower.index("frame")
    elif "time_sec" in lower:
        kind, kcol = "time_sec", lower.index("time_sec")
    else:
        raise InputError(path, "AU labels CSV needs a frame (0-based source frame) or time_sec column")
    vcol = None
    if not by_folder:
        if "video" not in lower:
            raise InputError(path, "AU labels CSV needs a video column (file stem or path of the source video)")
        vcol = lower.index("video")
    stem = Path(path).stem
    videos: dict[str, dict] = {}
    seen: set = set()
    for n, row in enumerate(reader, start=2):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) < len(header):
            row = row + [""] * (len(header) - len(row))
        vid = stem if vcol is None else row[vcol].strip()
        if not vid:
            raise InputError(path, f"line {n}: empty video")
        key = row[kcol].strip()
        try:
            pos = float(key)
        except ValueError:
            raise InputError(path, f"line {n}: {header[kcol]} {key!r} is not a number") from None
        if kind == "frame":
            if not np.isfinite(pos) or pos < 0 or pos != int(pos):
                raise InputError(path, f"line {n}: frame {key!r} is not a 0-based frame index")
            pos = int(pos)
        elif not np.isfinite(pos) or pos < 0:
            raise InputError(path, f"line {n}: time_sec {key!r} is not a time >= 0")
        if (vid, pos) in seen:
            raise InputError(path, f"line {n}: {kind} {key} of video {vid} is labelled twice")
        seen.add((vid, pos))
        vals = {}
        for name, i in cols.items():
            cell = row[i].strip()
            if cell == "" or cell.lower() in ("nan", "na", "n/a"):
                continue
            try:
                v = float(cell)
            except ValueError:
                raise InputError(path, f"line {n}: {header[i]} value {cell!r} is not a number") from None
            if v == AU_NOT_CODED:
                continue
            if not (0.0 <= v <= AU_MAX):
                raise InputError(path, f"line {n}: {header[i]} value {cell} is outside 0-5 "
                                       "(FACS intensity; blank, NaN or 9 = not coded)")
            vals[name] = v
        videos.setdefault(vid, {"kind": kind, "rows": []})["rows"].append((pos, vals))
    if not videos:
        raise InputError(path, "AU labels CSV has no label rows")
    return videos, list(cols), raw


def read_au_labels(path: str) -> tuple[dict[str, AULabels], str]:
    """Read DISFA-style per-frame AU labels.

    ``path`` is one CSV with a ``video`` column (the source video's file stem, file name or path/URI), or a
    folder (local or fsspec URL) of ``<video stem>.csv`` files (the CSV stem names the video; a ``video`` column
    is then ignored). Each row labels one source frame: ``frame`` (0-based index in presentation order; used
    when both are present) or ``time_sec`` (presentation time, s), and AU columns ``AU1``/``AU01``/``AU12L``/…
    (case-insensitive, renamed to FACS names ``AU01``, ``AU12L``) holding FACS intensities 0–5 or 0/1 occurrence;
    blank, NaN or 9 = not coded. Other columns are ignored. The AU names are the union over all CSVs, sorted by
    AU number (columns a CSV lacks are NaN).

    Returns:
        ({video id: :class:`AULabels`}, SHA-256 of the CSV bytes).

    Raises:
        InputError: one line naming the file and the reason (missing file, no AU / frame / video column,
            non-numeric cell, value outside 0–5, a frame labelled twice, no rows).
    """
    import hashlib

    fs, p = store.get_fs(path)
    if not fs.exists(p):
        raise InputError(path, "AU labels file or folder not found")
    if fs.isdir(p):
        files = sorted(f for f in fs.ls(p, detail=False) if f.lower().endswith(".csv"))
        if not files:
            raise InputError(path, "AU labels folder holds no .csv file")
        by_folder = True
    else:
        files, by_folder = [p], False
    h = hashlib.sha256()
    tables: dict[str, tuple[dict, str]] = {}
    names: set[str] = set()
    for f in files:
        videos, cols, raw = _read_label_csv(fs, f, by_folder)
        h.update(f.rsplit("/", 1)[-1].encode() + b"\0" + raw)
        names.update(cols)
        for vid, t in videos.items():
            if vid in tables:
                raise InputError(f, f"video {vid} is also labelled in {tables[vid][1]}")
            tables[vid] = (t, f)
    order = sorted(names, key=_au_sort_key)
    col = {n: j for j, n in enumerate(order)}
    out = {}
    for vid, (t, f) in tables.items():
        rows = sorted(t["rows"], key=lambda r: r[0])
        vals = np.full((len(rows), len(order)), np.nan, np.float32)
        for i, (_, d) in enumerate(rows):
            for n, v in d.items():
                vals[i, col[n]] = v
        keys = np.array([r[0] for r in rows])
        out[vid] = AULabels(order, keys.astype(np.int64) if t["kind"] == "frame" else None,
                            keys.astype(np.float64) if t["kind"] == "time_sec" else None, vals, f)
    return out, h.hexdigest()


def match_au_labels(sources: list[str], labels: dict[str, AULabels], path: str) -> dict[str, AULabels | None]:
    """{source: its labels or None}: a label video id matches a source's URI, path, file name or stem; else the
    id's own stem matches the source's stem (must be unique).

    Raises:
        InputError: a source's stem matches several label video ids.
    """
    by_stem: dict[str, list[str]] = {}
    for vid in labels:
        by_stem.setdefault(Path(vid.split("://")[-1]).stem, []).append(vid)
    out: dict[str, AULabels | None] = {}
    for s in sources:
        base = s.split("://")[-1]
        stem = Path(base).stem
        hit = next((c for c in (s, base, os.path.basename(base), stem) if c in labels), None)
        if hit is None:
            cands = by_stem.get(stem, [])
            if len(cands) > 1:
                raise InputError(path, f"video {s} matches several labelled videos ({', '.join(sorted(cands))}); "
                                       "use full paths in the video column")
            hit = cands[0] if cands else None
        out[s] = labels[hit] if hit is not None else None
    return out


def _run_ray(todo: list[tuple], workers: int, on_result, address: str | None) -> None:
    """Run the per-video tasks as Ray tasks (local Ray with ``workers`` CPUs, or the cluster at ``address``).

    Tasks are idempotent (a video is redone from scratch and its marker written last), so Ray's retries of
    tasks on lost workers are safe.
    """
    try:
        import ray
    except ImportError:
        raise ValueError("--executor ray needs the ray package (pip install ray)") from None
    started = False
    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        started = True
    try:
        remote = ray.remote(num_cpus=1)(process_video)
        pending = [remote.remote(*t) for t in todo]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            on_result(ray.get(done[0]))
    finally:
        if started:
            ray.shutdown()


def prepare(inputs: list[str], output: str, options: PrepareOptions | None = None, workers: int = 1,
            overwrite: bool = False, progress: bool = False, log=None, executor: str = "local",
            ray_address: str | None = None, **kwargs) -> PrepareReport:
    """Prepare a clip dataset from videos (see the module docstring for the steps and the layout).

    Args:
        inputs: local files, folders, globs or fsspec URLs (globs allowed).
        output: dataset root, a local folder or an fsspec URL.
        options: :class:`PrepareOptions`; keyword arguments override its fields.
        workers: processes working on videos in parallel (1: in this process; memory:// stores always 1).
        overwrite: discard an existing dataset at ``output`` instead of resuming it.
        progress: show a progress bar (videos, clips, rejected windows, throughput) on stderr.
        log: called with one line per failed video.
        executor: "local" (processes on this machine) or "ray" (Ray tasks; ``ray_address`` names a cluster,
            default a local Ray with ``workers`` CPUs; inputs and output must then be reachable from every node).

    Returns:
        :class:`PrepareReport` (also written as ``report.json``).

    Raises:
        ValueError: bad options, no inputs, or ``output`` prepared with different settings (without overwrite;
            changed ``au_labels`` contents count as different settings).
        InputError: unreadable subjects file; unreadable or invalid AU labels (checked before anything is written).
    """
    options = dataclasses.replace(options or PrepareOptions(), **kwargs)
    if options.egemaps:
        import importlib.util

        if importlib.util.find_spec("opensmile") is None:
            raise ValueError("--egemaps needs the optional opensmile package (pip install 'mien[audio]')")
    sources = store.expand_sources(list(inputs))
    if not sources:
        raise ValueError("no input videos")
    au_of: dict[str, AULabels | None] = {s: None for s in sources}
    settings = options.settings()
    if options.au_labels:
        labels, digest = read_au_labels(options.au_labels)
        au_of = match_au_labels(sources, labels, options.au_labels)
        settings["au_labels_sha256"] = digest
    fs, root = store.get_fs(output)
    settings_path = store.join(root, "settings.json")
    if overwrite and fs.exists(root):
        for sub in ("done", "shards"):
            if fs.exists(store.join(root, sub)):
                fs.rm(store.join(root, sub), recursive=True)
    if fs.exists(settings_path) and not overwrite:
        old = store.read_json(fs, settings_path)
        if old != store.json_roundtrip(settings):
            raise ValueError(f"{output}: already prepared with different settings (use --overwrite or a new folder)")
    fs.makedirs(store.join(root, "shards"), exist_ok=True)
    fs.makedirs(store.join(root, "done"), exist_ok=True)
    store.write_json(fs, settings_path, settings)
    store.remove_temporaries(fs, store.join(root, "shards"))
    store.remove_temporaries(fs, store.join(root, "done"))
    store.remove_temporaries(fs, root)

    subj = assign_subjects(sources, read_subjects(options.subjects) if options.subjects else None)
    keys = {s: store.video_key(s) for s in sources}
    done_names = {p.rsplit("/", 1)[-1] for p in fs.ls(store.join(root, "done"), detail=False)}
    todo = []
    for s in sources:
        if f"{keys[s]}.json" in done_names:
            continue
        for p in fs.glob(store.join(root, "shards", f"{keys[s]}-*.tar")):  # from a run killed mid-video
            fs.rm(p)
        todo.append((s, keys[s], subj[s][0], subj[s][1], options, output, au_of[s]))
    report = PrepareReport(resumed=len(sources) - len(todo))
    t0 = time.perf_counter()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(sources), initial=report.resumed, unit="video", desc="prepare", file=sys.stderr,
                   dynamic_ncols=True)
    counts = {"clips": 0, "rejected": 0, "src": 0.0}

    def on_result(m: dict) -> None:
        counts["clips"] += len(m["samples"])
        counts["rejected"] += sum(m["rejected"].values())
        counts["src"] += m["source_seconds"]
        if m["status"] != "ok" and log is not None:
            log(f"{m['input']}: {m['reason']}")
        if bar is not None:
            el = time.perf_counter() - t0
            bar.set_postfix(clips=counts["clips"], rejected=counts["rejected"],
                            speed=f"{counts['src'] / el:.2f}x" if el > 0 else "-")
            bar.update(1)

    if executor not in ("local", "ray"):
        raise ValueError(f"executor must be local or ray, got {executor!r}")
    workers = max(1, int(workers))
    if fs.protocol in ("memory",) or (isinstance(fs.protocol, tuple) and "memory" in fs.protocol):
        workers = 1  # an in-memory store is private to this process
    try:
        if executor == "ray" and todo and workers > 1:
            _run_ray(todo, workers, on_result, ray_address)
        elif workers == 1 or len(todo) <= 1:
            for t in todo:
                on_result(process_video(*t))
        else:
            import multiprocessing as mp

            # spawn: forking a process whose MediaPipe/BLAS threads already ran can deadlock the children
            with mp.get_context("spawn").Pool(min(workers, len(todo)), initializer=_worker_init) as pool:
                for m in pool.imap_unordered(_task, todo):
                    on_result(m)
    finally:
        if bar is not None:
            bar.close()
    report.wall_seconds = round(time.perf_counter() - t0, 3)
    report.source_seconds = round(counts["src"], 3)
    finalize(output, sources, options, report)
    return report


def finalize(output: str, sources: list[str], options: PrepareOptions, report: PrepareReport) -> dict:
    """Rebuild ``manifest.json``, ``index.parquet`` and ``report.json`` from the done markers of ``sources``.

    Returns:
        The manifest dict.
    """
    import datetime

    import pyarrow as pa
    import pyarrow.parquet as pq

    from mien._version import __version__
    from mien.data.audio import feature_versions

    fs, root = store.get_fs(output)
    markers = []
    for s in sources:
        p = store.join(root, "done", f"{store.video_key(s)}.json")
        if fs.exists(p):
            markers.append(store.read_json(fs, p))
    rows, shards, rejected, models = [], [], {}, {}
    report.ok, report.failed, report.no_au_labels = [], [], []
    au_names: list[str] = []
    for m in markers:
        for k, v in m["rejected"].items():
            rejected[k] = rejected.get(k, 0) + v
        if m["status"] == "ok":
            rows.extend(m["samples"])
            shards.extend(m["shards"])
            models = models or m.get("models", {})
            report.ok.append({"input": m["input"], "video_key": m["video_key"], "samples": len(m["samples"]),
                              "shards": [s["name"] for s in m["shards"]], "rejected": m["rejected"],
                              "has_audio": m["has_audio"], "has_au": m.get("has_au", False),
                              "seconds": m["seconds"]})
            if m.get("has_au"):
                au_names = au_names or list(m["au_names"])
            elif options.au_labels:
                report.no_au_labels.append(m["input"])
        else:
            report.failed.append({"input": m["input"], "reason": m["reason"]})
    rows.sort(key=lambda r: r["key"])
    shards.sort(key=lambda s: s["name"])
    report.samples = len(rows)
    report.rejected = dict(sorted(rejected.items()))
    subjects = {}
    for m in markers:
        subjects[m["subject"]] = m["subject_id"]
    manifest = {
        "schema_version": store.SCHEMA_VERSION,
        "mien_version": __version__,
        "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "settings": options.settings(),
        "feature_extractors": {
            "landmarks": {"scheme": "mediapipe478", "models": models},
            "alignment": {"method": "similarity from eye and mouth centres (mien.face.align)",
                          "crop_size": options.crop_size, "margin": options.margin,
                          "smooth_frames": options.smooth_frames},
            **feature_versions(),
        },
        "members": {"mp4": "H.264 crop video (T, S, S, 3)", "affine.npy": "(T, 2, 3) float32 source->crop",
                    "landmarks.npy": "(T, 478, 3) float32 crop px", "pose.npy": "(T, 6) float32 yaw, pitch, roll deg,"
                    " tx, ty, tz mm", "openness.npy": "(T, 3) float32 ear_left, ear_right, mouth_open",
                    "times.npy": "(T, 2) float64 clip time, source presentation time (s)",
                    "flac": "16 kHz mono audio (if has_audio)", "logmel.npy": "(T, 80) float32 dB",
                    "mfcc.npy": "(T, 13) float32", "json": "sample metadata",
                    "au.npy": "(T, A) float32 FACS AU intensity 0-5 (or 0/1 occurrence) of the source frame shown, "
                              "NaN = not coded; columns = au_names (only clips of labelled videos, --au-labels)"},
        "num_samples": len(rows),
        "num_videos": sum(m["status"] == "ok" for m in markers),
        "num_subjects": len({r["subject_id"] for r in rows}),
        "subjects": dict(sorted(subjects.items(), key=lambda kv: kv[1])),
        "shards": shards,
        "au_names": au_names,
    }
    if options.au_labels:
        spath = store.join(root, "settings.json")
        manifest["au_labels"] = {
            "source": options.au_labels, "names": au_names,
            "sha256": store.read_json(fs, spath).get("au_labels_sha256") if fs.exists(spath) else None,
            "values": "FACS intensity 0-5 or 0/1 occurrence as in the CSV; blank/NaN/9 -> NaN",
            "join": "frame: the source frame shown; time_sec: nearest label within half a source frame",
            "labelled_samples": sum(bool(r.get("has_au")) for r in rows),
            "videos_without_labels": report.no_au_labels}
    store.write_json(fs, store.join(root, "manifest.json"), manifest)
    cols = ["key", "shard", "source", "video_key", "subject", "subject_id", "start_sec", "end_sec", "fps",
            "frames", "has_audio", "mode", "keyword", "score", "crop_size", "has_au"]
    types = [pa.string(), pa.string(), pa.string(), pa.string(), pa.string(), pa.int64(), pa.float64(),
             pa.float64(), pa.float64(), pa.int64(), pa.bool_(), pa.string(), pa.string(), pa.float64(), pa.int64(),
             pa.bool_()]
    for r in rows:  # markers written before AU labels existed
        r.setdefault("has_au", False)
    schema = pa.schema([pa.field(c, t) for c, t in zip(cols, types, strict=True)],
                       metadata={"mien": f'{{"schema_version": "{store.SCHEMA_VERSION}"}}'})
    table = pa.table({c: pa.array([r[c] for r in rows], type=t) for c, t in zip(cols, types, strict=True)},
                     schema=schema)
    with store.atomic_target(fs, store.join(root, "index.parquet")) as tmp:
        pq.write_table(table, tmp)
    store.write_json(fs, store.join(root, "report.json"), dataclasses.asdict(report))
    return manifest
